"""Who is asking, and the protocol around a data-subject request.

Every access command resolves an :class:`AccessContext` (user, role, log, paths). A
data-subject request is for the data protection officer only: anyone else is refused and the
refusal logged (``subject.refused``); a dpo's request is logged before the work
(``subject.begin``, with the plate's keyed pseudonym, never the plate) and after it
(``subject.end``, outcome ``ok`` or ``failed``).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, write_to_textfile

from pipeline.access.audit import ActivityLog
from pipeline.access.identity import (
    AccessPaths,
    Identity,
    Purpose,
    access_paths,
    check_purpose,
    resolve_identity,
)
from pipeline.access.session import AccessSession
from pipeline.access.subjects import checked_plate
from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.metrics import AccessMetrics
from pipeline.pseudonym import Pseudonymiser

# The request's work: (lake, plate, its pseudonym, seq of subject.begin) -> fields of subject.end.
SubjectWork = Callable[[Lake, str, str, int], dict[str, Any]]


@dataclass(frozen=True)
class AccessContext:
    """Who is asking (``identity``), where the log and key live, and the settings."""

    settings: Settings
    paths: AccessPaths
    identity: Identity
    log: ActivityLog

    @classmethod
    def resolve(cls, settings: Settings, requested_user: str | None) -> AccessContext:
        """The OS user, or ``requested_user`` where ``access.user_flag`` allows it."""
        paths = access_paths(settings)
        identity = resolve_identity(
            settings.access, requested=requested_user, os_user=getpass.getuser()
        )
        return cls(settings, paths, identity, ActivityLog.from_settings(settings))

    def pseudonymiser(self) -> Pseudonymiser:
        return Pseudonymiser.from_key_file(self.paths.key_file)

    def purpose(self, reason: str | None, case: str | None) -> Purpose:
        return check_purpose(self.settings.access, self.identity, reason=reason, case=case)

    def need_lake(self) -> None:
        Storage.existing(self.settings.lake)

    def open_session(self) -> AccessSession:
        """A read-only session over the views of the caller's role."""
        self.need_lake()
        return AccessSession.open(
            self.settings.lake.path,
            self.identity.role,
            now=datetime.now(UTC),
            analyst_max_age_days=self.settings.access.analyst_max_age_days,
            retention_months=self.settings.retention.months,
            pseudo=self.pseudonymiser(),
            activity=self.log,
            storage=Storage.from_settings(self.settings.lake),
            temp_parent=self.paths.query_temp,
        )

    def write_metrics(self) -> None:
        """Rewrite the access metrics textfile from the log's head (counts by outcome)."""
        head = self.log.head()
        registry = CollectorRegistry()
        metrics = AccessMetrics(registry)
        if head is not None:
            metrics.load(dict(head.counts), head.next_seq)
        self.paths.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(self.paths.metrics_file), registry)


def dpo_only(ctx: AccessContext, what: str) -> None:
    """Refuse (logged, then :class:`UsageError`) unless the caller's role is dpo."""
    if ctx.identity.role != "dpo":
        ctx.log.append(
            {
                "kind": "subject.refused",
                "at": datetime.now(UTC).isoformat(),
                "user": ctx.identity.user,
                "role": ctx.identity.role,
                "request": what,
                "outcome": "refused",
            }
        )
        raise UsageError(f"{what} is for the data protection officer (role dpo) only")


def log_audit_report(ctx: AccessContext, since: datetime, until: datetime) -> None:
    """Log that the dpo summarised the activity log over [since, until)."""
    ctx.log.append(
        {
            "kind": "audit.report",
            "at": datetime.now(UTC).isoformat(),
            "user": ctx.identity.user,
            "role": ctx.identity.role,
            "since": since.isoformat(),
            "until": until.isoformat(),
        }
    )


def subject_request(
    ctx: AccessContext,
    kind: str,
    plate_text: str,
    work: SubjectWork,
    *,
    case: str | None,
    event_id: str | None = None,
    note: str | None = None,
) -> None:
    """Check the role, log the request, open the lake writable, do ``work``, log the end."""
    dpo_only(ctx, f"subject {kind}")
    plate = checked_plate(plate_text)
    ctx.need_lake()
    subject = ctx.pseudonymiser().one(plate)
    begin = ctx.log.append(
        {
            "kind": "subject.begin",
            "at": datetime.now(UTC).isoformat(),
            "user": ctx.identity.user,
            "role": ctx.identity.role,
            "reason": "dsar",
            "case": case,
            "request": kind,
            "subject": subject,
            "event_id": event_id,
            "note": note,
        }
    )
    end: dict[str, Any] = {"kind": "subject.end", "begin": begin["seq"], "request": kind}
    try:
        with Lake.from_settings(ctx.settings.lake, create=False) as lake:
            done = work(lake, plate, subject, begin["seq"])
    except BaseException as exc:
        ctx.log.append(
            {**end, "at": datetime.now(UTC).isoformat(), "outcome": "failed",
             "error": type(exc).__name__}
        )  # fmt: skip
        raise
    ctx.log.append({**end, "at": datetime.now(UTC).isoformat(), "outcome": "ok", **done})
