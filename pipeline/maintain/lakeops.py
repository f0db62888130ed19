"""Small helpers every maintenance step uses on the lake: retried transactions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import duckdb

from pipeline.errors import LakeConflict
from pipeline.lake.catalog import Lake, RetryPolicy, is_write_conflict

_T = TypeVar("_T")


class Retrying:
    """Run a unit of lake work again, from the start, while it hits a write conflict."""

    def __init__(
        self, policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.conflicts = 0

    def __call__(self, what: str, once: Callable[[], _T]) -> _T:
        for attempt in range(self.policy.attempts):
            try:
                return once()
            except duckdb.Error as exc:
                if not is_write_conflict(exc):
                    raise
                self.conflicts += 1
                self.sleep(self.policy.delay(attempt))
        raise LakeConflict(f"{what}: {self.policy.attempts} attempts conflicted")


def in_transaction(lake: Lake, body: Callable[[], _T]) -> _T:
    """``body`` inside one lake transaction: committed if it returns, rolled back if not."""
    con = lake.con
    con.execute("BEGIN TRANSACTION")
    try:
        result = body()
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return result
