"""The client of ``anpr serve``: what the ``anpr`` commands and notebooks use.

In a notebook::

    from pipeline.service.client import Client
    with Client.local("/run/anpr/query.sock") as anpr:
        table = anpr.query("SELECT site_id, count(*) FROM plate_reads GROUP BY 1", reason="control")

``table`` is a ``pyarrow.Table``: ``duckdb.sql("SELECT * FROM table")``, ``table.to_pandas()``
or ``polars.from_arrow(table)``. Remotely, :meth:`Client.remote` with a client certificate.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa

from pipeline.config import ServeSettings
from pipeline.errors import PipelineError, UsageError
from pipeline.service.peers import client_tls_context
from pipeline.service.wire import Reply, WireError, read_reply, request, stream_of, write_frame

START_HINT = "start it as the service account: `anpr serve` (or systemctl start anpr-serve)"


class ServiceUnavailable(PipelineError):
    """No service to talk to, or it dropped the connection: one line, exit 1."""


class ServiceError(PipelineError):
    """The service answered with an error (``reply`` has the exit code and the text)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error or f"exit {reply.exit}")
        self.reply = reply


class Client:
    """One connection to the service; any number of requests, one after the other."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self._sock = sock
        self._stream = stream_of(sock)
        self.where = where

    @classmethod
    def local(cls, path: Path | str) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise ServiceUnavailable(
                f"the query service is not running (no listener on {path}): {START_HINT}"
            ) from None
        except OSError as exc:
            sock.close()
            raise ServiceUnavailable(
                f"cannot reach the query service at {path}: {exc.strerror}"
            ) from None
        return cls(sock, str(path))

    @classmethod
    def remote(cls, address: str, *, cert: Path, key: Path, server_ca: Path) -> Client:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            context = client_tls_context(str(cert), str(key), str(server_ca))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the client certificate or CA: {exc}") from None
        try:
            raw = socket.create_connection((host, int(port)), timeout=10)
            sock = context.wrap_socket(raw, server_hostname=host)
            sock.settimeout(None)
        except ssl.SSLError as exc:
            raise ServiceUnavailable(f"TLS with the query service at {address} failed: "
                                     f"{exc.reason or exc}") from None  # fmt: skip
        except OSError as exc:
            raise ServiceUnavailable(
                f"cannot reach the query service at {address}: {exc.strerror or exc}"
            ) from None
        return cls(sock, address)

    @classmethod
    def from_settings(cls, serve: ServeSettings) -> Client:
        """The remote service if ``serve.remote`` is set, else the local socket."""
        if serve.remote:
            cert, key, ca = serve.client_cert, serve.client_key, serve.server_ca
            if cert is None or key is None or ca is None:
                raise UsageError("serve.remote needs client_cert, client_key and server_ca")
            return cls.remote(serve.remote, cert=cert, key=key, server_ca=ca)
        return cls.local(serve.socket)

    def call(self, op: str, **args: Any) -> Reply:
        """Send one request; the reply, whatever its exit code."""
        try:
            write_frame(self._stream, request(op, **args))
            self._stream.flush()
            return read_reply(self._stream)
        except (OSError, WireError, ssl.SSLError, pa.ArrowInvalid) as exc:
            raise ServiceUnavailable(
                f"the query service at {self.where} dropped the connection: "
                f"{getattr(exc, 'reason', None) or exc}"
            ) from None

    def query(self, sql: str, *, reason: str, case: str | None = None) -> pa.Table:
        """Run one SELECT over your role's views; raise :class:`ServiceError` if refused."""
        reply = self.call("query", sql=sql, reason=reason, case=case)
        if not reply.ok or reply.table is None:
            raise ServiceError(reply)
        return reply.table

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def is_listening(path: Path) -> bool:
    """True once a service accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
