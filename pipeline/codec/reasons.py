"""DLQ reason codes, the one :class:`Rejection` (reason, detail) and the one strict JSON reader.

One enum for every stage, so a DLQ record, a metric label and a log line use the same word.
Expired-on-arrival events are deliberately *not* a reason: they are counted and dropped, never
written anywhere, the DLQ included (DESIGN.md, invariant 4); the decoder reports them
separately (:attr:`pipeline.codec.plate_reads.DecodeResult.expired`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Mapping
from enum import StrEnum
from typing import Final


class Reason(StrEnum):
    """Why a message was rejected; the value is the code written to the DLQ record."""

    MALFORMED_JSON = "malformed_json"
    """Not exactly one JSON object in UTF-8: bad syntax, array or scalar, two documents,
    trailing bytes, a byte-order mark, NaN/Infinity literals, a repeated key, an unpaired
    surrogate escape, nesting too deep (the policy: :mod:`pipeline.codec`)."""

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


class Rejection(Exception):
    """A message (or one read of it) that cannot be stored: why, and which rule it broke.

    Every decoder raises it inside and reports it at its edge (a DLQ record, a returned list).
    ``detail`` names fields and rules only, never a value from the message.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"Rejection({self.reason.value!r}, {self.detail!r})"


class NestedTooDeep(Rejection):
    """JSON nested beyond Python's recursion limit (``malformed_json``); a subclass so the
    canonical decoder can re-read the message as its vectorised path would."""


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _NonFinite(Exception):
    pass


def _no_constant(name: str) -> object:
    raise _NonFinite


def _refuse_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey(_first_repeat(pairs, None))
    return obj


def _first_repeat(pairs: list[tuple[str, object]], fields: Container[str] | None) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen and (fields is None or key in fields):
            return key
        seen.add(key)
    return ""


def _scoped_decoder(fields: Container[str]) -> json.JSONDecoder:
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            key = _first_repeat(pairs, fields)
            if key:
                raise _RepeatedKey(key)
        return obj

    return json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=hook)


class _Noted(dict[str, object]):
    """A JSON object read with its repeated keys set aside (the last value kept)."""

    repeated: frozenset[str] = frozenset()


def _note_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = _Noted(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated: set[str] = set()
        for key, _ in pairs:
            (repeated if key in seen else seen).add(key)
        obj.repeated = frozenset(repeated)
    return obj


Shape = Mapping[str, "Shape"]
"""The fields a decoder reads, each with the fields it reads inside that one (an array's
objects share its field's shape); a leaf maps to nothing."""


def _refuse_read_repeats(document: object, shape: Shape, path: str) -> None:
    # Lists walked with a stack, not recursion: a read field may hold lists nested as deep as
    # the parser allowed, right up to the recursion limit.
    items = [document]
    while items:
        item = items.pop()
        if isinstance(item, list):
            items.extend(reversed(item))  # popped in document order
            continue
        if not isinstance(item, dict):
            continue
        repeated: frozenset[str] = getattr(item, "repeated", frozenset())
        for key, inner in shape.items():
            if key in repeated:
                detail = f"field '{path}{key}' appears more than once"
                raise Rejection(Reason.MALFORMED_JSON, detail)
            if inner and key in item:
                _refuse_read_repeats(item[key], inner, f"{path}{key}.")


# Built once per scope: json.loads with hooks would build a new decoder per message.
_NOTING: Final = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_note_repeats)
_WHOLE: Final = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_refuse_repeats)
_SCOPED: dict[frozenset[str], json.JSONDecoder] = {}
# A \uD800-\uDFFF escape; only a message holding one can decode to an unpaired surrogate.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def strict_json(
    value: bytes, *, fields: frozenset[str] | None = None, read: Shape | None = None
) -> object:
    """The one JSON document in ``value``, read under the codec's hostile-input policy.

    Raises :class:`Rejection` (``malformed_json``) for anything but exactly one JSON document
    in UTF-8: invalid UTF-8, bad syntax, trailing data, NaN/Infinity, an integer literal beyond
    Python's digit limit, a repeated key, an unpaired surrogate escape, nesting deeper than
    Python's recursion limit (:class:`NestedTooDeep`). ``fields`` narrows the last three to the
    fields a decoder reads, for the canonical decoder whose vectorised reader skips every other
    field unparsed: then only a repeat of one of ``fields`` (in any object) and an unpaired
    surrogate in a top-level string among them count. ``read`` narrows repeats alone to the
    fields a decoder reads, at their places (a vendor whose batch reader skips the others
    unchecked); every other rule still covers the whole document. See :mod:`pipeline.codec`.
    """
    malformed = Reason.MALFORMED_JSON
    if fields is not None and read is not None:
        raise ValueError("strict_json: fields and read narrow the rules two ways; give one")
    decoder = _WHOLE if read is None else _NOTING
    if fields is not None:
        decoder = _SCOPED.get(fields) or _SCOPED.setdefault(fields, _scoped_decoder(fields))
    try:
        document = decoder.decode(value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Rejection(malformed, f"not valid UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise Rejection(malformed, f"not valid JSON: {exc.msg} at char {exc.pos}") from exc
    except _RepeatedKey as exc:
        # Whole-document mode names no key: an unknown key is a value from the message.
        detail = (
            "a JSON object repeats a key"
            if fields is None
            else f"field '{exc.key}' appears more than once"
        )
        raise Rejection(malformed, detail) from exc
    except _NonFinite as exc:
        raise Rejection(malformed, "NaN and Infinity are not JSON numbers") from exc
    except RecursionError as exc:
        raise NestedTooDeep(malformed, "JSON nested too deeply to be read") from exc
    except ValueError as exc:  # an integer literal beyond Python's digit limit
        raise Rejection(malformed, "number literal too long") from exc
    if read is not None:
        _refuse_read_repeats(document, read, "")
    if _SURROGATE_ESCAPE.search(value):
        _refuse_surrogates(document, fields)
    return document


def _refuse_surrogates(document: object, fields: frozenset[str] | None) -> None:
    # Paired escapes decode to one character; an unpaired one cannot be encoded as UTF-8.
    if fields is None:
        if not _encodable(document):
            raise Rejection(Reason.MALFORMED_JSON, "a string holds an unpaired surrogate escape")
        return
    if isinstance(document, dict):
        for name in sorted(fields):
            text = document.get(name)
            if isinstance(text, str) and not _encodable(text):
                raise Rejection(
                    Reason.MALFORMED_JSON, f"field '{name}' holds an unpaired surrogate escape"
                )


def _encodable(document: object) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True
