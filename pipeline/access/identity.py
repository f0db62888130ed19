"""Who is asking, in which role, and why (pure: the OS user is passed in).

identity = resolve_identity(settings.access, requested=None, os_user=getpass.getuser())
purpose = check_purpose(settings.access, identity, reason="investigation", case="2026-0042")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import AccessSettings, Settings
from pipeline.errors import UsageError
from pipeline.pseudonym import key_file

CASE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9./_-]{0,63}")
USER_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
# Investigators read clear plates: always for a case, whatever the reason code says.
CASE_ALWAYS = frozenset({"investigator"})


@dataclass(frozen=True)
class Identity:
    user: str
    role: str


@dataclass(frozen=True)
class Purpose:
    reason: str
    case: str | None


@dataclass(frozen=True)
class AccessPaths:
    key_file: Path
    activity_log: Path
    reports_dir: Path
    metrics_file: Path
    query_temp: Path  # each query session's private DuckDB temporary folder goes in here
    audit_key: Path


def access_paths(settings: Settings) -> AccessPaths:
    """Where the keys, the log (its file), the request reports, the metrics textfile and the
    query sessions' spills live."""
    base = settings.state.dir / "access"
    access = settings.access
    return AccessPaths(
        key_file(settings),
        access.activity_log or base / "activity.jsonl",
        access.reports_dir or base / "reports",
        settings.state.dir / "metrics" / "access.prom",
        base / "query-tmp",
        access.audit_key_file or base / "audit.key",
    )


def resolve_identity(access: AccessSettings, *, requested: str | None, os_user: str) -> Identity:
    """The caller's identity: ``requested`` (``--user``) only where configured, else the OS user."""
    if requested is not None and not access.user_flag:
        raise UsageError(
            "--user is not allowed here (access.user_flag is off): you are your OS user"
        )
    user = requested if requested is not None else os_user
    if not USER_PATTERN.fullmatch(user):
        raise UsageError("user names are letters, digits and _.@-")
    role = access.users.get(user)
    if role is None:
        raise UsageError(
            f"user {user} has no role in [access] users: ask the data protection officer"
        )
    return Identity(user, role)


def check_purpose(
    access: AccessSettings, identity: Identity, *, reason: str | None, case: str | None
) -> Purpose:
    """A configured reason code, and a case reference where the reason or role needs one."""
    if not reason:
        raise UsageError(f"--reason is required: one of {', '.join(access.reasons)}")
    if reason not in access.reasons:
        raise UsageError(f"unknown --reason {reason!r}: use one of {', '.join(access.reasons)}")
    if case is not None and not CASE_PATTERN.fullmatch(case):
        raise UsageError("--case is letters, digits and ./_- (at most 64)")
    if case is None and (reason in access.case_required_for or identity.role in CASE_ALWAYS):
        why = f"role {identity.role}" if identity.role in CASE_ALWAYS else f"reason {reason}"
        raise UsageError(f"--case REF is required for {why}")
    return Purpose(reason, case)
