"""Reason codes for messages that go to the dead-letter queue (``anpr.dlq``).

One enum for every stage, so a DLQ record, a metric label and a log line use the same word.
Expired-on-arrival events are deliberately *not* a reason: they are counted and dropped, never
written anywhere, the DLQ included (DESIGN.md, invariant 4); the decoder reports them
separately (:attr:`pipeline.codec.plate_reads.DecodeResult.expired`).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a message was rejected; the value is the code written to the DLQ record."""

    MALFORMED_JSON = "malformed_json"
    """Not exactly one JSON object in UTF-8: bad syntax, array or scalar, two documents,
    trailing bytes, a byte-order mark, NaN/Infinity literals, nesting too deep."""

    MALFORMED_XML = "malformed_xml"
    """A vendor XML payload (Hikvision) that is not well-formed, or carries a DTD, entities or
    external references (refused, never expanded)."""

    SCHEMA_VIOLATION = "schema_violation"
    """A well-formed object that breaks ``plate_read/1``: missing field, wrong JSON type,
    string too long, value outside its range, time without an offset."""

    UNKNOWN_SITE = "unknown_site"
    """The site/camera pair is not in the site registry."""

    INVALID_PLATE = "invalid_plate"
    """The plate text does not fit the format of its reported country."""

    FUTURE_TIMESTAMP = "future_timestamp"
    """``captured_at`` is later than the decoder's clock plus the tolerance."""

    OVERSIZED = "oversized"
    """The raw value is longer than the configured maximum message size."""

    UNSUPPORTED_FORMAT = "unsupported_format"
    """The ``schema`` field names a format this pipeline does not read."""

    EMPTY_VALUE = "empty_value"
    """No bytes at all: an empty value or a tombstone (``None``)."""

    MALFORMED_EDIFACT = "malformed_edifact"
    """A UN/EDIFACT PAXLST interchange that breaks the syntax: bad UNA, missing or misplaced
    envelope segments (UNB/UNG/UNH/UNT/UNE/UNZ), counts or references that disagree,
    truncated data, a character set other than the UNB header says, unreadable dates."""

    CONTROL_TOTAL_MISMATCH = "control_total_mismatch"
    """A PAXLST message whose CNT control total disagrees with the people it lists."""
