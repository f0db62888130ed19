"""The demo's query service: ``anpr serve`` beside the broker, and a certificate per role.

The demo runs as one OS user, so the kernel would give every query the same identity. To show
both roles it plays two remote users instead, as a workstation would: a throwaway CA (in the
state folder) signs client certificates for ``demo-analyst`` and ``demo-investigator``, and the
service's configuration (written here, owned by the demo's user, mode 0600) gives them their
roles. The printed set-up line of a role points the client at the service over TLS with that
role's certificate.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.demo.children import check_alive, log_tail, start_child
from pipeline.demo.state import Demo
from pipeline.errors import PipelineError
from pipeline.files import write_atomic
from pipeline.localproc import free_port
from pipeline.service.ca import issue, make_ca
from pipeline.service.client import is_listening

ROLES: Final = ("analyst", "investigator")
_START_TIMEOUT_S: Final = 120.0


@dataclass(frozen=True)
class DemoService:
    """Where the demo's service listens, and how a client reaches it as a role."""

    config: Path
    socket: Path
    address: str  # 127.0.0.1:port, TLS
    tls: Path

    def setup(self, role: str) -> str:
        """The line that makes the client act as ``role`` (its certificate), as printed."""
        return (
            f"export ANPR_SERVE_REMOTE={self.address} "
            f"ANPR_SERVE_SERVER_CA={self.tls / 'ca.pem'} "
            f"ANPR_SERVE_CLIENT_CERT={self.tls / role}.pem "
            f"ANPR_SERVE_CLIENT_KEY={self.tls / role}.key"
        )

    @property
    def start_command(self) -> str:
        return f"anpr --config {self.config} serve &"


def _toml(value: object) -> str:
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def prepare(demo: Demo) -> DemoService:
    """Certificates and the service's configuration under ``<state>/demo/serve``."""
    folder = demo.state_dir / "serve"
    tls = folder / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    ca = make_ca(tls, "ca")
    issue(tls, ca, "server", "127.0.0.1", server=True)
    for role in ROLES:
        issue(tls, ca, role, f"demo-{role}", server=False)
    settings = demo.settings
    service = DemoService(
        folder / "serve.toml", folder / "query.sock", f"127.0.0.1:{free_port()}", tls
    )
    users = ", ".join(f'"demo-{role}" = "{role}"' for role in ROLES)
    write_atomic(
        service.config,
        f"[kafka]\nbootstrap_servers = {_toml(settings.kafka.bootstrap_servers)}\n"
        f"[topics]\naudit_anchors = {_toml(settings.topics.audit_anchors)}\n"
        f"[lake]\npath = {_toml(settings.lake.path.resolve())}\n"
        f"[state]\ndir = {_toml(settings.state.dir.resolve())}\n"
        f"[access]\nusers = {{ {users} }}\n"
        f"[serve]\nsocket = {_toml(service.socket)}\n"
        f"tls_listen = {_toml(service.address)}\n"
        f"tls_cert = {_toml(tls / 'server.pem')}\ntls_key = {_toml(tls / 'server.key')}\n"
        f"tls_client_ca = {_toml(tls / 'ca.pem')}\n",
    )
    return service


def start_service(demo: Demo) -> None:
    """``anpr serve`` as a child process; wait until it accepts connections."""
    service = prepare(demo)
    demo.service = service
    demo.serve = start_child(demo, "serve", ["--config", str(service.config), "serve"], {})
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not is_listening(service.socket):
        check_alive(demo)
        if demo.serve.poll() is not None:
            raise PipelineError(f"anpr serve exited:\n{log_tail(demo, 'serve')}")
        if time.monotonic() > deadline:
            raise PipelineError(f"anpr serve did not listen in time:\n{log_tail(demo, 'serve')}")
        time.sleep(0.2)
    demo.console.print(
        f"anpr serve (pid {demo.serve.pid}) answers queries on {service.socket} and TLS "
        f"{service.address}; roles by client certificate: "
        + ", ".join(f"demo-{r} ({r})" for r in ROLES),
        highlight=False,
    )
