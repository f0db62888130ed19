"""What each request does, for a user the service has identified, by the service's rules.

Everything a handler decides comes from the service's own settings: the users and their roles,
reasons, case rules, windows, key and log. A request carries only what the user asks for (SQL,
reason code, case reference, dates); the identity is the :class:`~pipeline.service.peers.Peer`
the listener established from the kernel or the TLS handshake.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from pipeline.access.anchors import AnchorPublisher, read_anchors, verify_log
from pipeline.access.audit import ActivityLog, Anchor, summarise
from pipeline.access.derived import SharedCopies
from pipeline.access.identity import (
    CASE_PATTERN,
    AccessPaths,
    Identity,
    access_paths,
    check_purpose,
)
from pipeline.access.requests import AccessContext, dpo_only, log_audit_report
from pipeline.access.session import DERIVED_ROLES, SCHEMA, AccessSession, run_logged
from pipeline.access.statement import QueryRefused
from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.lake.backend import Storage
from pipeline.pseudonym import Pseudonymiser
from pipeline.service.peers import Peer
from pipeline.service.subjects import WORK as SUBJECT_WORK
from pipeline.service.subjects import run_subject_request
from pipeline.service.wire import Reply, optional_arg, text_arg

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
Args = Mapping[str, Any]


@dataclass
class _Idle:
    opened: float
    session: AccessSession


class SessionPool:
    """Open query sessions per role, reused for at most ``max_age_s``: the analyst window and
    the legal cut-off are fixed when a session opens, so that is all the slack they get.

    The dpo's session holds a copy of the activity log: it is reloaded before each query.
    """

    def __init__(self, open_session: Callable[[str], AccessSession], max_age_s: float) -> None:
        self._open = open_session
        self._max_age_s = max_age_s
        self._idle: dict[str, list[_Idle]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def session(self, role: str) -> Iterator[AccessSession]:
        held = self._take(role) or _Idle(time.monotonic(), self._open(role))
        try:
            yield held.session
        except QueryRefused:
            # Refused before anything ran: the session is as it was (reopening the lake for
            # every refused statement made a burst of them cost seconds each).
            self._put_back(role, held)
            raise
        except BaseException:
            held.session.close()
            raise
        self._put_back(role, held)

    def _put_back(self, role: str, held: _Idle) -> None:
        if time.monotonic() - held.opened > self._max_age_s:
            held.session.close()
            return
        with self._lock:
            self._idle.setdefault(role, []).append(held)

    def _take(self, role: str) -> _Idle | None:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(role, [])
            while idle:
                held = idle.pop()
                if now - held.opened <= self._max_age_s:
                    return held
                held.session.close()
        return None

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for held in idle:
                    held.session.close()
            self._idle.clear()


def _now() -> datetime:
    return datetime.now(UTC)


class Service:
    """The service's state: its settings, its log, its key, its pool of sessions."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _now,
        anchors: AnchorPublisher | None = None,
        anchor_source: Callable[[Settings], list[Anchor]] = read_anchors,
    ) -> None:
        """``anchors`` publishes the log's head (``anpr serve`` passes one; tests may not);
        ``anpr audit verify`` checks the log against what ``anchor_source`` reads back."""
        self.settings = settings
        self.clock = clock
        # A PostgreSQL catalog without a query login stops `anpr serve` at start (exit 2).
        Storage.from_settings(settings.lake).for_queries()
        self.paths: AccessPaths = access_paths(settings)
        self.anchors = anchors
        self._anchor_source = anchor_source
        self.log = ActivityLog.from_settings(settings, on_append=anchors)
        if anchors is not None:
            anchors.start(self.log.head())
        self.pseudo = Pseudonymiser.from_key_file(self.paths.key_file)
        # The analyst's and statistics' copies of their views, kept while the service runs.
        self.copies = SharedCopies(schema=SCHEMA, temp_parent=self.paths.query_temp)
        self.pool = SessionPool(self._open_session, settings.serve.session_max_age_s)
        self._ops: dict[str, Callable[[Identity, Args], Reply]] = {
            "hello": self._hello,
            "query": self._query,
            "audit.verify": self._audit_verify,
            "audit.report": self._audit_report,
        }
        for kind in SUBJECT_WORK:
            self._ops[f"subject.{kind}"] = self._subject(kind)

    def close(self) -> None:
        self.pool.close()
        self.copies.close()
        if self.anchors is not None:
            self.anchors.close()
        self.log.close()

    # --- the door --------------------------------------------------------------------------

    def refuse_peer(self, via: str, address: str, why: str) -> None:
        """Log a connection that could not be identified (no or foreign certificate...)."""
        logger.warning("refused a %s connection from %s: %s", via, address, why)
        self.log.append(
            {"kind": "auth.refused", "at": self._at(), "via": via, "peer": address, "why": why}
        )
        self.write_metrics()

    def handle(self, peer: Peer, message: Mapping[str, Any]) -> Reply:
        """One request from an identified peer: never raises, every outcome is a reply."""
        op, args = message.get("op"), message.get("args")
        if not isinstance(op, str) or op not in self._ops or not isinstance(args, dict):
            return Reply(EXIT_USAGE, error=f"unknown request {str(op)[:40]!r}: update anpr")
        try:
            identity = self._identify(peer, op)
            return self._ops[op](identity, args)
        except UsageError as exc:
            return Reply(EXIT_USAGE, error=str(exc))
        except PipelineError as exc:
            logger.error("%s for %s failed: %s", op, peer.user, type(exc).__name__)
            return Reply(EXIT_FAILURE, error=str(exc))
        except Exception as exc:  # the service stays up; the client gets a line, not a trace
            logger.exception("%s for %s failed", op, peer.user)
            return Reply(EXIT_FAILURE, error=f"the service failed ({type(exc).__name__})")
        finally:
            self.write_metrics()

    def _identify(self, peer: Peer, op: str) -> Identity:
        role = self.settings.access.users.get(peer.user)
        if role is None:
            self.log.append(
                {
                    "kind": "access.refused",
                    "at": self._at(),
                    "user": peer.user,
                    "via": peer.via,
                    "peer": peer.detail,
                    "request": op,
                    "why": "no role",
                }
            )
            raise UsageError(
                f"user {peer.user} has no role in the service's [access] users: "
                "ask the data protection officer"
            )
        return Identity(peer.user, role)

    def _at(self) -> str:
        return self.clock().astimezone(UTC).isoformat()

    def _open_session(self, role: str) -> AccessSession:
        storage = Storage.existing(self.settings.lake)
        return AccessSession.open(
            self.settings.lake.path,
            role,
            storage=storage,
            now=self.clock(),
            analyst_max_age_days=self.settings.access.analyst_max_age_days,
            retention_months=self.settings.retention.months,
            pseudo=self.pseudo,
            activity=self.log,
            temp_parent=self.paths.query_temp,
            copies=self.copies,
        )

    def warm(self) -> None:
        """Make the analyst's and statistics' copies of their views (ADR 0008, layer 4) before
        their first query: ``anpr serve`` runs this in a thread once it listens. A copy of a
        large window takes seconds to minutes; without this the first query would wait."""
        for role in sorted(DERIVED_ROLES & set(self.settings.access.users.values())):
            began = time.monotonic()
            try:
                with self.pool.session(role):
                    pass
            except Exception as exc:  # the first query tries again and reports it
                # The type only: a DuckDB message may quote a value of a row.
                logger.warning("could not prepare the %s role's copy: %s", role,
                               type(exc).__name__)  # fmt: skip
                continue
            logger.info("the %s role's copy is ready (%.1f s)", role, time.monotonic() - began)

    def context(self, identity: Identity) -> AccessContext:
        """The access context of a request: the peer's identity, the service's rules."""
        return AccessContext(self.settings, self.paths, identity, self.log)

    def write_metrics(self) -> None:
        """The access metrics textfile (node exporter), from the log head's totals."""
        self.context(Identity("anpr-serve", "service")).write_metrics()

    # --- requests --------------------------------------------------------------------------

    def _hello(self, identity: Identity, args: Args) -> Reply:
        with self.pool.session(identity.role) as session:
            views = sorted(session.plan.names)
        return Reply(EXIT_OK, extra={"user": identity.user, "role": identity.role,
                                     "views": views})  # fmt: skip

    def _query(self, identity: Identity, args: Args) -> Reply:
        try:
            if args.get("not_utf8") is True:
                raise UsageError("the statement was not UTF-8 text (its bytes were not sent)")
            sql = text_arg(args, "sql")
            purpose = check_purpose(
                self.settings.access,
                identity,
                reason=optional_arg(args, "reason"),
                case=optional_arg(args, "case"),
            )
        except UsageError as exc:
            # Every attempt is logged, also one without (or with an unknown) reason or case;
            # what the caller sent is kept only if it is a valid code or reference.
            reason, case = args.get("reason"), args.get("case")
            self.log.append(
                {
                    "kind": "query.refused",
                    "at": self._at(),
                    "user": identity.user,
                    "role": identity.role,
                    "reason": reason if reason in self.settings.access.reasons else "(invalid)",
                    "case": case
                    if isinstance(case, str) and CASE_PATTERN.fullmatch(case)
                    else None,
                    "sql": args.get("sql") if isinstance(args.get("sql"), str) else None,
                    "outcome": "refused",
                    "why": str(exc),
                }
            )
            raise
        with self.pool.session(identity.role) as session:
            if session.plan.activity_log:
                session.reload_activity(self.log)
            table = run_logged(session, self.log, identity, purpose, sql, clock=self.clock)
        return Reply(EXIT_OK, table=table)

    def _audit_verify(self, identity: Identity, args: Args) -> Reply:
        verdict = verify_log(self.settings, self.log, anchors=self._anchor_source)
        return Reply(EXIT_OK if verdict.ok else EXIT_FAILURE, out=verdict.describe() + "\n")

    def _audit_report(self, identity: Identity, args: Args) -> Reply:
        ctx = self.context(identity)
        dpo_only(ctx, "audit report")
        since = datetime.combine(_day(args, "since"), datetime.min.time(), UTC)
        until = datetime.combine(_day(args, "until"), datetime.min.time(), UTC)
        rows = summarise(self.log.entries(), since, until)
        table = pa.Table.from_pylist([r.__dict__ for r in rows]) if rows else pa.table({})
        log_audit_report(ctx, since, until)
        return Reply(EXIT_OK, table=table)

    def _subject(self, kind: str) -> Callable[[Identity, Args], Reply]:
        def handle(identity: Identity, args: Args) -> Reply:
            done = run_subject_request(self.context(identity), kind, args)
            return Reply(EXIT_OK, out=done.line + "\n", extra={"files": dict(done.files)})

        return handle


def _day(args: Args, key: str) -> date:
    try:
        return date.fromisoformat(text_arg(args, key))
    except ValueError:
        raise UsageError(f"--{key} is not a date (YYYY-MM-DD)") from None
