import getpass
import json
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.files import OpenToOthers, check_private
from pipeline.service.handlers import Service
from pipeline.service.peers import Peer


def _settings(tmp_path: Path, users: dict[str, str]) -> Settings:
    return load_settings(
        None,
        env={},
        overrides={"lake.path": tmp_path / "lake", "state.dir": tmp_path / "state",
                   "access.users": users},
    )  # fmt: skip


def _entries(service: Service) -> list[dict[str, object]]:
    return [json.loads(line) for line in service.log.lines()]


def test_a_user_without_a_role_gets_nothing_and_is_logged(tmp_path: Path) -> None:
    service = _settings(tmp_path, {"ann": "analyst"})
    svc = Service(service)
    reply = svc.handle(Peer("mallory", "unix", "uid=4242 pid=1"), {"op": "query", "args": {
        "sql": "SELECT 1", "reason": "control"}})  # fmt: skip
    assert reply.exit == 2
    assert reply.table is None
    assert "mallory has no role" in str(reply.error)
    (entry,) = _entries(svc)
    assert entry["kind"] == "access.refused"
    assert entry["user"] == "mallory"
    assert entry["peer"] == "uid=4242 pid=1"


def test_only_the_dpo_gets_the_audit_report_and_refusals_are_logged(tmp_path: Path) -> None:
    svc = Service(_settings(tmp_path, {"ann": "analyst", "dora": "dpo"}),
                  anchor_source=lambda settings: [])  # fmt: skip
    args = {"since": "2026-01-01", "until": "2027-01-01"}
    refused = svc.handle(Peer("ann", "unix", ""), {"op": "audit.report", "args": args})
    assert refused.exit == 2
    assert "data protection officer" in str(refused.error)
    answered = svc.handle(Peer("dora", "unix", ""), {"op": "audit.report", "args": args})
    assert answered.exit == 0
    assert answered.table is not None
    kinds = [e["kind"] for e in _entries(svc)]
    assert kinds == ["subject.refused", "audit.report"]
    verify = svc.handle(Peer("ann", "unix", ""), {"op": "audit.verify", "args": {}})
    assert (verify.exit, verify.out) == (
        0,
        "activity log intact: 2 entries, nothing anchored yet\n",
    )


def test_unknown_requests_and_bad_arguments_get_a_usage_error(tmp_path: Path) -> None:
    svc = Service(_settings(tmp_path, {getpass.getuser(): "analyst"}))
    me = Peer(getpass.getuser(), "unix", "")
    assert svc.handle(me, {"op": "shell", "args": {}}).exit == 2
    assert svc.handle(me, {"op": "query", "args": []}).exit == 2
    bad_sql = svc.handle(me, {"op": "query", "args": {"sql": 42, "reason": "control"}})
    assert (bad_sql.exit, bad_sql.error) == (2, "sql is required")
    no_reason = svc.handle(me, {"op": "query", "args": {"sql": "SELECT 1"}})
    assert "--reason is required" in str(no_reason.error)


def test_a_folder_open_to_others_is_refused_naming_the_fix(tmp_path: Path) -> None:
    open_folder = tmp_path / "lake"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    with pytest.raises(OpenToOthers, match=f"chmod -R go-rwx {open_folder}"):
        check_private(open_folder, "lake folder")
    created = tmp_path / "state" / "inner"
    check_private(created, "state folder")
    assert created.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        ({"sql": "SELECT 1"}, {"reason": "(invalid)", "case": None}),
        ({"sql": "SELECT 1", "reason": "curiosity"}, {"reason": "(invalid)", "case": None}),
        ({"sql": "SELECT 1", "reason": "investigation"}, {"reason": "investigation"}),
        ({"sql": "SELECT 1", "reason": "control", "case": "bad case!"}, {"case": None}),
        ({"reason": "control"}, {"sql": None}),
    ],
)
def test_every_query_attempt_is_logged_even_without_a_valid_purpose(
    tmp_path: Path, args: dict[str, str], kept: dict[str, object]
) -> None:
    svc = Service(_settings(tmp_path, {"ann": "analyst"}), anchor_source=lambda settings: [])
    reply = svc.handle(Peer("ann", "unix", ""), {"op": "query", "args": args})
    assert reply.exit == 2
    (entry,) = _entries(svc)
    assert (entry["kind"], entry["user"], entry["outcome"]) == ("query.refused", "ann", "refused")
    assert entry["why"] == str(reply.error)
    assert {k: entry[k] for k in kept} == kept
