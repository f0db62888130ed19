"""The deployment files (deploy/): they parse, agree with each other, and run real commands.

Containers and systemd cannot run here, so what can be checked without them is: every YAML and
TOML file loads, every `anpr ...` they run is a command of the CLI (parsed by the CLI's own
parser), every ANPR_* variable they set is a real setting, the compose services and ports match
what Prometheus scrapes, and the production Kafka settings build a librdkafka client.
`systemd-analyze verify` runs on the units in tests/integration/test_deploy_units.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaException, Producer

from pipeline.cli import build_parser
from pipeline.config import Settings, load_settings
from pipeline.kafka import local
from tests import ops_contract as oc

DEPLOY = oc.REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"
SYSTEMD = DEPLOY / "systemd"
CONFIG = DEPLOY / "config"
# Instances of the template units that the README tells operators to enable.
TEMPLATE_INSTANCES = {"anpr-ingest@.service": ("plates", "passengers")}
ANPR_IMAGE = "localhost/anpr:0.1.0"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


# --- every `anpr ...` the files run ---------------------------------------------------------

_SHELL_KEYWORDS = {"do", "then", "else", "while", "until", "if", "exec", "!"}
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "((", "))"}


def anpr_invocations_in_shell(script: str) -> Iterator[list[str]]:
    """Arguments of each command in a shell script whose program is ``anpr`` (or .../anpr)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segment: list[str] = []
    for token in [*lexer, ";"]:
        if token in _SEPARATORS or set(token) <= set(";&|()"):
            while segment and segment[0] in _SHELL_KEYWORDS:
                segment.pop(0)
            if segment and (segment[0] == "anpr" or segment[0].endswith("/anpr")):
                yield segment[1:]
            segment = []
        else:
            segment.append(token)


def _compose_invocations() -> Iterator[tuple[str, list[str]]]:
    for name, service in _compose()["services"].items():
        if service.get("image") != ANPR_IMAGE:
            continue
        command = service.get("command", [])
        entrypoint = service.get("entrypoint", ["anpr"])
        if entrypoint == ["anpr"]:
            yield f"compose {name}", list(command)
        else:
            assert entrypoint == ["/bin/sh", "-c"], name
            script = command[0].replace("$$", "$")  # compose's escape for a literal $
            found = list(anpr_invocations_in_shell(script))
            assert found, f"compose {name} runs no anpr command"
            for args in found:
                yield f"compose {name}", args


def _unit_files() -> list[Path]:
    return sorted(p for p in SYSTEMD.iterdir() if p.suffix in {".service", ".timer"})


def _unit_values(path: Path, key: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{key}=")
    ]


def _systemd_invocations() -> Iterator[tuple[str, list[str]]]:
    for path in _unit_files():
        for exec_start in _unit_values(path, "ExecStart"):
            for instance in TEMPLATE_INSTANCES.get(path.name, ("",)):
                argv = shlex.split(exec_start.replace("%i", instance))
                assert argv[0] == "/opt/anpr/venv/bin/anpr", path.name
                yield f"{path.name} ({instance or 'unit'})", argv[1:]


def _containerfile_instructions() -> dict[str, list[str]]:
    """ENTRYPOINT/CMD (exec form, JSON) and ENV of the Containerfile."""
    text = CONTAINERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in {"ENTRYPOINT", "CMD"}:
            out[word] = json.loads(rest)
        elif word == "ENV":
            out.setdefault("ENV", []).extend(shlex.split(rest))
    return out


def _containerfile_invocations() -> Iterator[tuple[str, list[str]]]:
    instructions = _containerfile_instructions()
    assert instructions["ENTRYPOINT"] == ["anpr"]
    yield "Containerfile CMD", instructions["CMD"]


def _all_invocations() -> list[tuple[str, list[str]]]:
    return [*_compose_invocations(), *_systemd_invocations(), *_containerfile_invocations()]


def _parses(args: list[str]) -> bool:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            return exc.code == 0  # --help
    return True


def _command_words(args: list[str]) -> tuple[str, ...]:
    """``["--config", "f", "ingest", "plates", "--x"]`` → ``("ingest", "plates")``."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif arg.startswith("-"):
            if words:
                break
        else:
            words.append(arg)
    return tuple(words)


def _pending(args: list[str]) -> bool:
    words = _command_words(args)
    return any(words[: len(p)] == p for p in oc.PENDING_COMMANDS)


INVOCATIONS = _all_invocations()


@pytest.mark.parametrize(
    "args", [a for _, a in INVOCATIONS], ids=[f"{w}: {' '.join(a)}" for w, a in INVOCATIONS]
)
def test_every_anpr_command_in_deploy_files_exists(args: list[str]) -> None:
    assert _parses(args) or _pending(args), f"`anpr {' '.join(args)}` is not a valid command"


def test_the_files_run_every_long_running_command_and_maintenance() -> None:
    words = {(_command_words(a)) for _, a in INVOCATIONS}
    for needed in [("ingest", "plates"), ("ingest", "passengers"), ("live",), ("maintain",)]:
        assert needed in words
    sources = {where.split()[0] for where, _ in INVOCATIONS}
    assert {"compose", "Containerfile"} <= sources
    assert any(s.endswith(".service") for s in sources)


def test_pending_commands_are_not_in_the_cli_yet() -> None:
    """After a merge the CLI has them: delete them from PENDING_COMMANDS (tests/ops_contract)."""
    present = sorted(p for p in oc.PENDING_COMMANDS if _parses([*p, "--help"]))
    assert not present, f"remove from PENDING_COMMANDS: {present}"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("anpr maintain", [["maintain"]]),
        (
            'while true; do sleep $(( 3 % 2 )); anpr maintain || echo "anpr x failed" >&2; done',
            [["maintain"]],
        ),
        ("/opt/anpr/venv/bin/anpr --config a.toml ingest plates && anpr live", None),
    ],
)
def test_anpr_invocations_in_shell(script: str, expected: list[list[str]] | None) -> None:
    found = list(anpr_invocations_in_shell(script))
    if expected is None:
        expected = [["--config", "a.toml", "ingest", "plates"], ["live"]]
    assert found == expected


# --- settings the files set -----------------------------------------------------------------


def _known_env_names() -> set[str]:
    defaults = Settings()
    return {
        f"ANPR_{section.name}_{f.name}".upper()
        for section in dataclasses.fields(defaults)
        for f in dataclasses.fields(getattr(defaults, section.name))
        if f.name != "client"
    }


def _env_of_files() -> dict[str, dict[str, str]]:
    env = _containerfile_instructions()["ENV"]
    out = {"Containerfile": dict(item.split("=", 1) for item in env)}
    for name, service in _compose()["services"].items():
        if service.get("image") == ANPR_IMAGE:
            out[f"compose {name}"] = {k: str(v) for k, v in service["environment"].items()}
    return out


def test_every_anpr_variable_in_the_files_is_a_setting() -> None:
    known = _known_env_names()
    for where, env in _env_of_files().items():
        unknown = sorted(k for k in env if k.startswith("ANPR_") and k not in known)
        assert not unknown, f"{where}: {unknown} are not settings"
        load_settings(None, env=env)  # and their values are valid


def test_production_settings_load_and_build_a_kafka_client() -> None:
    env_lines = (CONFIG / "anpr.env.example").read_text(encoding="utf-8").splitlines()
    env = dict(line.split("=", 1) for line in env_lines if line and not line.startswith("#"))
    assert set(env) <= _known_env_names() | {"ANPR_KAFKA_SASL_PASSWORD"}
    settings = load_settings(CONFIG / "anpr.toml", env=env)
    client = settings.kafka.client_config()
    assert client["security.protocol"] == "SASL_SSL"
    assert client["sasl.password"] == env["ANPR_KAFKA_SASL_PASSWORD"]
    assert env["ANPR_KAFKA_SASL_PASSWORD"] not in json.dumps(settings.redacted())
    assert settings.retention.months == 6
    assert settings.topics.replication_factor == 3
    # librdkafka rejects unknown keys when a client is built; a closed loopback port, and the
    # files the example names are left out, so nothing is contacted or opened.
    checked = {k: v for k, v in client.items() if not k.endswith(".location")}
    Producer({**checked, "bootstrap.servers": "127.0.0.1:1"}).flush(0)


def test_a_misspelt_librdkafka_key_is_caught_by_that_check() -> None:
    with pytest.raises(KafkaException, match="No such configuration property"):
        Producer({"bootstrap.servers": "127.0.0.1:1", "sasl.mechansim": "PLAIN"})


# --- compose, Prometheus and the other files agree --------------------------------------------


def test_every_yaml_and_json_file_in_deploy_loads() -> None:
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        assert yaml.safe_load(path.read_text(encoding="utf-8")), path
    for path in DEPLOY.rglob("*.json"):
        assert json.loads(path.read_text(encoding="utf-8")), path
    for path in DEPLOY.rglob("*.toml"):
        assert tomllib.loads(path.read_text(encoding="utf-8")), path


def test_compose_has_every_part_of_the_system() -> None:
    services = _compose()["services"]
    assert {
        "kafka",
        "topics",
        "ingest-plates",
        "ingest-passengers",
        "live",
        "maintain",
        "node-exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    } <= set(services)


def test_compose_bind_mounts_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_prometheus_scrapes_the_compose_services_on_their_ports() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((oc.PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    targets = []
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets += [(name, str(sd["port"])) for name in sd["names"]]
        for static in job.get("static_configs", []):
            targets += [tuple(t.split(":")) for t in static["targets"]]
    for host, port in targets:
        if host == "localhost":
            continue
        assert host in services, f"prometheus scrapes {host}, not a compose service"
        assert port in services[host].get("expose", []), f"{host} does not expose {port}"
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"anpr-ingest-plates", "anpr-ingest-passengers", "anpr-live", "node"} <= jobs


def test_contract_ports() -> None:
    """9464 plates, 9465 passengers, 9466 live (the brief's contract)."""
    services = _compose()["services"]
    assert services["ingest-plates"]["expose"] == ["9464"]
    assert services["ingest-passengers"]["expose"] == ["9465"]
    assert services["live"]["expose"] == ["9466"]
    assert Settings().ingest.metrics_port == 9464


def test_node_exporter_reads_the_textfiles_anpr_writes() -> None:
    services = _compose()["services"]
    state = (
        services["ingest-plates"]["environment"].get("ANPR_STATE_DIR")
        or dict(item.split("=", 1) for item in _containerfile_instructions()["ENV"])[
            "ANPR_STATE_DIR"
        ]
    )
    exporter = services["node-exporter"]
    assert f"--collector.textfile.directory={state}/metrics" in exporter["command"]
    assert any(v.startswith(f"state:{state}") for v in exporter["volumes"])


def test_compose_kafka_is_the_version_of_the_local_broker() -> None:
    pom = local.DEFAULT_POM.read_text(encoding="utf-8")
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match
    assert _compose()["services"]["kafka"]["image"].endswith(f":{match.group(1)}")


def test_maintenance_timer_runs_nightly_and_catches_up() -> None:
    timer = SYSTEMD / "anpr-maintain.timer"
    assert _unit_values(timer, "OnCalendar") == ["*-*-* 02:30:00 UTC"]
    assert _unit_values(timer, "Persistent") == ["true"]
    assert _unit_values(timer, "Unit") == ["anpr-maintain.service"]
    assert _unit_values(SYSTEMD / "anpr-maintain.service", "Type") == ["oneshot"]


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    compose = _compose()["services"]["grafana"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "anpr.yml").read_text("utf-8")
    )
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana:{path}:ro" in compose["volumes"]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text("utf-8")
    )["datasources"][0]
    (board,) = oc.dashboards()
    uids = {
        p["datasource"]["uid"]
        for p in json.loads(board.read_text("utf-8"))["panels"]
        if "datasource" in p
    }
    assert uids == {datasource["uid"]}


def test_an_unknown_command_or_flag_is_caught() -> None:
    for args in (["ingest", "plate"], ["ingest", "plates", "--bogus"], ["mantain"]):
        assert not _parses(args), args
        assert not _pending(args), args


def test_alertmanager_routes_to_defined_receivers_and_inhibits_real_alerts() -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text("utf-8"))
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {r["receiver"] for r in routes} <= receivers
    severities = {rule["labels"]["severity"] for rule in oc.rules() if "alert" in rule}
    assert {f'severity="{s}"' for s in severities} - {'severity="warning"'} == {
        m for r in config["route"]["routes"] for m in r["matchers"]
    }
    alerts = {rule["alert"] for rule in oc.rules() if "alert" in rule}
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            name = re.fullmatch(r'alertname="(\w+)"', matcher)
            assert name, matcher
            assert name.group(1) in alerts
