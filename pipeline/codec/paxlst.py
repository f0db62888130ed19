"""UN/EDIFACT PAXLST (passenger and crew lists) parsed into :class:`Manifest` objects.

Pure: bytes in, manifests out, or :class:`Rejection` with a reason code. Our own parser,
because pydifact refuses ``UNG`` functional groups and does not check control counts; the
subset read here is what ferry operators send (D:05B and later directories):

Envelope
    ``UNA`` service string advice (optional; any six separator characters, control
    characters included), ``UNB`` interchange header (syntax identifier picks the character
    set: UNOA/UNOB ASCII, UNOC/UNOD/UNOE/UNOF Latin, UNOW/UNOY UTF-8), optional ``UNG``/``UNE``
    functional groups, one or more ``UNH``..``UNT`` messages, ``UNZ``. Every count and
    reference is checked: ``UNT`` segment count and message reference, ``UNE`` message count
    and group reference, ``UNZ`` count (groups when grouped, else messages) and interchange
    reference.
Message header (segment group 1-3)
    ``BGM+745`` (passenger list) or ``BGM+250`` (crew list); ``TDT+20+<voyage>++++<carrier>``
    (carrier in C040, vessel name or IMO number in C222); ``LOC+125`` departure port +
    ``DTM+189`` departure time; ``LOC+87`` arrival port + ``DTM+232`` arrival time;
    ``LOC+92`` (routing) is read and not kept.
Person (segment group 4, one per ``NAD``)
    ``NAD+FL`` passenger or ``NAD+FM`` crew member (C080: surname, then given names; address
    elements are never read), ``ATT+2`` sex, ``DTM+329`` date of birth, ``LOC+178/179``
    (embarkation/disembarkation; read, not kept), ``NAT+2`` nationality, ``RFF+ZVR:<plate>``
    (vehicle the person travels in) or ``RFF+ZVD:<plate>`` (vehicle the person drives: role
    driver), other ``RFF`` (reservation numbers: dropped), ``DOC`` type and number, ``DTM+36``
    (expiry; not kept), ``LOC+91`` document issuing country.
Control totals
    ``CNT+41`` (crew) / ``CNT+42`` (passengers): must equal the number of people in the message,
    else :data:`Reason.CONTROL_TOTAL_MISMATCH`.

``ZVR``/``ZVD`` are codes of the ``Z``-range, which EDIFACT leaves for bilateral agreement:
PAXLST has no standard place for a vehicle registration, so we document ours (README).
Dates are read by their ``DTM`` format code, and the code must fit the length: times
(``DTM+189``/``232``) 201 ``YYMMDDHHMM``, 203 ``CCYYMMDDHHMM``, 204 ``CCYYMMDDHHMMSS``; dates of
birth (``DTM+329``) 102 ``CCYYMMDD`` or 101 ``YYMMDD``. Without a code the length says which
(10/12/14 and 8/6 digits). A two-digit year of a time is 20YY. A two-digit year of birth is
placed in the latest century that does not put the birth after the departure (else the arrival)
of the message: ``310101`` on a 2026 voyage is 1931, ``040229`` is 29 February 2004; a
six-digit birth date in a message without either time cannot be placed and is refused. Times are
UTC by agreement with the senders. Details in errors name segments and rules, never a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Final, Protocol

from pipeline.codec.reasons import Reason, Rejection

DEFAULT_SEPARATORS: Final = (":", "+", ".", "?", " ", "'")
_CHARSETS: Final = {
    "UNOA": "ascii",
    "UNOB": "ascii",
    "UNOC": "latin-1",
    "UNOD": "iso8859-2",
    "UNOE": "iso8859-5",
    "UNOF": "iso8859-7",
    "UNOW": "utf-8",
    "UNOY": "utf-8",
}
_SYNTAX: Final = re.compile(rb"UNB.([A-Z]{4})", re.DOTALL)
PERSON_QUALIFIERS: Final = {"FL": "passenger", "FM": "crew"}
VEHICLE_TRAVELS_IN: Final = "ZVR"
VEHICLE_DRIVES: Final = "ZVD"
# ICAO Doc 9303 codes that are not alpha-3: Germany is "D" in passports, and carriers copy it
# into NAT and LOC+91 (the German APIS exporters do).
_ICAO_NATIONS: Final = {"D": "DEU"}
_DOCUMENT_TYPES: Final = {"745": "passenger", "250": "crew"}
_COUNT_QUALIFIERS: Final = {"41", "42"}
_MAX_SEGMENTS: Final = 200_000


def _malformed(detail: str) -> Rejection:
    return Rejection(Reason.MALFORMED_EDIFACT, detail)


@dataclass(frozen=True)
class Separators:
    component: str = ":"
    element: str = "+"
    decimal: str = "."
    release: str | None = "?"
    segment: str = "'"


@dataclass(frozen=True)
class Person:
    """One person on a list, as sent (normalisation and minimisation come later)."""

    role: str
    surname: str | None = None
    given_names: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    nationality: str | None = None
    document_type: str | None = None
    document_number: str | None = None
    document_issuing_country: str | None = None
    vehicle_plate: str | None = None


@dataclass(frozen=True)
class Manifest:
    """One departure's list: the same shape whether it came as JSON or PAXLST."""

    carrier: str | None
    vessel: str | None
    voyage_id: str | None
    departure_port: str | None
    departure_at: datetime | None
    arrival_port: str | None
    arrival_at: datetime | None
    direction: str | None
    people: tuple[Person, ...] = field(default_factory=tuple)


def looks_like_edifact(value: bytes) -> bool:
    """Whether a message is an EDIFACT interchange (starts with UNA or UNB)."""
    head = value.lstrip(b" \t\r\n")[:3]
    return head in (b"UNA", b"UNB")


def parse_interchange(value: bytes) -> list[Manifest]:
    """Every message of a PAXLST interchange as a manifest; raises :class:`Rejection`."""
    segments = split_segments(value)
    return _Interchange(segments).manifests()


# -- lexical level -----------------------------------------------------------------------------


def split_segments(value: bytes) -> list[list[list[str]]]:
    """Segments → elements → components, separators from ``UNA``, release characters applied."""
    value = value.lstrip(b" \t\r\n")
    separators, body = _service_advice(value)
    text = _decode(body)
    breaks = "".join(c for c in "\r\n" if c not in (separators.element, separators.component))
    return _tokenise(text.lstrip(breaks), separators)


def _service_advice(value: bytes) -> tuple[Separators, bytes]:
    if not value.startswith(b"UNA"):
        return Separators(), value
    if len(value) < 9:
        raise _malformed("UNA is shorter than its 6 service characters")
    chars = value[3:9].decode("latin-1")
    component, element, decimal, release, segment = (chars[i] for i in (0, 1, 2, 3, 5))
    release_char = None if release == " " else release
    used = [component, element, segment] + ([release_char] if release_char else [])
    if len(set(used)) != len(used):
        raise _malformed("UNA names the same character for two roles")
    if any(ord(c) > 0x7F for c in used) and b"UNB" in value[9:40]:
        syntax = _SYNTAX.search(value[9:40])
        if syntax is not None and _CHARSETS.get(syntax.group(1).decode()) == "utf-8":
            raise _malformed("UNA separators must be ASCII in a UTF-8 interchange")
    return Separators(component, element, decimal, release_char, segment), value[9:]


def _decode(body: bytes) -> str:
    syntax = _SYNTAX.match(body.lstrip(b" \t\r\n"))
    if syntax is None:
        raise _malformed("no UNB interchange header")
    charset = _CHARSETS.get(syntax.group(1).decode("ascii"))
    if charset is None:
        raise _malformed("UNB syntax identifier is not one we read (UNOA..UNOF, UNOW, UNOY)")
    try:
        return body.decode(charset)
    except UnicodeDecodeError:
        raise _malformed(f"bytes outside the {charset} character set of the UNB header") from None


def _tokenise(text: str, seps: Separators) -> list[list[list[str]]]:
    if seps.release is None or seps.release not in text:
        return _tokenise_plain(text, seps)
    segments: list[list[list[str]]] = []
    element: list[str] = []
    current: list[list[str]] = []
    chars: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == seps.release:
            if i + 1 >= n:
                raise _malformed("release character at the very end")
            chars.append(text[i + 1])
            i += 2
            continue
        if c == seps.component:
            element.append("".join(chars))
            chars = []
        elif c == seps.element:
            element.append("".join(chars))
            current.append(element)
            element, chars = [], []
        elif c == seps.segment:
            element.append("".join(chars))
            current.append(element)
            segments.append(current)
            current, element, chars = [], [], []
            i = _skip_line_breaks(text, i + 1, seps)
            continue
        else:
            chars.append(c)
        i += 1
    if chars or element or current:
        raise _malformed("the interchange ends inside a segment (truncated?)")
    return _checked(segments)


def _tokenise_plain(text: str, seps: Separators) -> list[list[list[str]]]:
    """The common case, no release character in the text: plain splits, no per-char loop."""
    pieces = text.split(seps.segment)
    breaks = "".join(c for c in "\r\n" if c not in (seps.element, seps.component))
    if pieces[-1].strip(breaks):
        raise _malformed("the interchange ends inside a segment (truncated?)")
    segments = [
        [element.split(seps.component) for element in piece.lstrip(breaks).split(seps.element)]
        for piece in pieces[:-1]
    ]
    return _checked(segments)


def _skip_line_breaks(text: str, i: int, seps: Separators) -> int:
    # Senders often end each segment with a line break too; harmless unless it is a separator.
    while i < len(text) and text[i] in "\r\n" and text[i] not in (seps.element, seps.component):
        i += 1
    return i


def _checked(segments: list[list[list[str]]]) -> list[list[list[str]]]:
    if len(segments) > _MAX_SEGMENTS:
        raise _malformed(f"more than {_MAX_SEGMENTS} segments")
    for seg in segments:
        tag = seg[0][0]
        if len(seg[0]) != 1 or not re.fullmatch(r"[A-Z]{3}", tag):
            raise _malformed("a segment tag is not three capital letters")
    return segments


# -- syntax level ------------------------------------------------------------------------------

Segment = list[list[str]]


def _get(seg: Segment, element: int, component: int = 0) -> str | None:
    """A data element's component, or None when absent or empty."""
    if element >= len(seg) or component >= len(seg[element]):
        return None
    value = seg[element][component]
    return value if value != "" else None


class _Interchange:
    def __init__(self, segments: list[Segment]) -> None:
        self._segments = segments
        self._pos = 0

    def _peek(self) -> str | None:
        if self._pos >= len(self._segments):
            return None
        return self._segments[self._pos][0][0]

    def _take(self, tag: str) -> Segment:
        if self._peek() != tag:
            found = self._peek() or "the end"
            raise _malformed(f"expected {tag}, found {found}")
        seg = self._segments[self._pos]
        self._pos += 1
        return seg

    def manifests(self) -> list[Manifest]:
        unb = self._take("UNB")
        reference = _get(unb, 5)
        if reference is None:
            raise _malformed("UNB has no interchange control reference")
        out: list[Manifest] = []
        units = 0
        if self._peek() == "UNG":
            while self._peek() == "UNG":
                out.extend(self._group())
                units += 1
        while self._peek() == "UNH":
            out.append(self._message())
            units += 1
        unz = self._take("UNZ")
        if self._pos != len(self._segments):
            raise _malformed("segments after UNZ")
        if _get(unz, 2) != reference:
            raise _malformed("UNZ reference differs from UNB's")
        if _get(unz, 1) != str(units):
            raise _malformed("UNZ count differs from the groups or messages sent")
        if not out:
            raise _malformed("the interchange holds no message")
        return out

    def _group(self) -> list[Manifest]:
        ung = self._take("UNG")
        reference = _get(ung, 5)
        messages = []
        while self._peek() == "UNH":
            messages.append(self._message())
        une = self._take("UNE")
        if _get(une, 2) != reference:
            raise _malformed("UNE reference differs from UNG's")
        if _get(une, 1) != str(len(messages)):
            raise _malformed("UNE count differs from the messages in the group")
        return messages

    def _message(self) -> Manifest:
        start = self._pos
        unh = self._take("UNH")
        if _get(unh, 2) != "PAXLST":
            raise _malformed("UNH message type is not PAXLST")
        while self._peek() not in (None, "UNT", "UNH", "UNE", "UNZ"):
            self._pos += 1
        body = self._segments[start + 1 : self._pos]
        unt = self._take("UNT")
        if _get(unt, 2) != _get(unh, 1):
            raise _malformed("UNT reference differs from UNH's")
        if _get(unt, 1) != str(self._pos - start):
            raise _malformed("UNT segment count differs from the segments in the message")
        return _MessageReader().read(body)


# -- message level -----------------------------------------------------------------------------


class _MessageReader:
    """The segments between UNH and UNT: header groups, then one group per person."""

    def __init__(self) -> None:
        self.manifest = Manifest(None, None, None, None, None, None, None, None)
        self.people: list[Person] = []
        self.person: Person | None = None
        self.list_kind: str | None = None
        self.last_loc: str | None = None
        self.counts: list[int] = []
        # Six-digit dates of birth wait for the departure date that places their century.
        self.birth_text: str | None = None
        self.short_births: list[tuple[int, str]] = []

    def read(self, body: list[Segment]) -> Manifest:
        for seg in body:
            handler = getattr(self, f"_seg_{seg[0][0].lower()}", None)
            if handler is not None:
                handler(seg)
        self._close_person()
        if self.list_kind is None:
            raise _malformed("no BGM segment")
        self._place_short_births()
        for total in self.counts:
            if total != len(self.people):
                raise Rejection(
                    Reason.CONTROL_TOTAL_MISMATCH,
                    f"CNT says {total} people, the message lists {len(self.people)}",
                )
        m = self.manifest
        direction = None
        if m.departure_port and m.departure_port.startswith("NO"):
            direction = "exit"
        elif m.arrival_port and m.arrival_port.startswith("NO"):
            direction = "entry"
        return replace(m, direction=direction, people=tuple(self.people))

    def _close_person(self) -> None:
        if self.person is not None:
            if self.birth_text is not None:
                self.short_births.append((len(self.people), self.birth_text))
                self.birth_text = None
            self.people.append(self.person)
            self.person = None

    def _place_short_births(self) -> None:
        if not self.short_births:
            return
        voyage = self.manifest.departure_at or self.manifest.arrival_at
        if voyage is None:
            raise _malformed("DTM six-digit date of birth in a message without DTM+189 or 232")
        for index, text in self.short_births:
            birth = _short_birth_date(text, voyage.date())
            self.people[index] = replace(self.people[index], date_of_birth=birth)

    def _seg_bgm(self, seg: Segment) -> None:
        kind = _DOCUMENT_TYPES.get(_get(seg, 1) or "")
        if kind is None:
            raise _malformed("BGM document code is neither 745 (passengers) nor 250 (crew)")
        self.list_kind = kind

    def _seg_tdt(self, seg: Segment) -> None:
        if _get(seg, 1) != "20":  # 20: main carriage; other legs are not this departure
            return
        vessel = _get(seg, 8, 3) or _get(seg, 8, 0)
        self.manifest = replace(
            self.manifest, voyage_id=_get(seg, 2), carrier=_get(seg, 5), vessel=vessel
        )

    def _seg_loc(self, seg: Segment) -> None:
        qualifier, place = _get(seg, 1), _get(seg, 2)
        self.last_loc = qualifier
        if self.person is None:
            if qualifier == "125":
                self.manifest = replace(self.manifest, departure_port=place)
            elif qualifier == "87":
                self.manifest = replace(self.manifest, arrival_port=place)
            return
        if qualifier == "91":
            country = _ICAO_NATIONS.get(place or "", place)
            self.person = replace(self.person, document_issuing_country=country)

    def _seg_dtm(self, seg: Segment) -> None:
        qualifier, text, fmt = _get(seg, 1, 0), _get(seg, 1, 1), _get(seg, 1, 2)
        if qualifier == "189" and self.person is None:
            self.manifest = replace(self.manifest, departure_at=_datetime(text, fmt))
        elif qualifier == "232" and self.person is None:
            self.manifest = replace(self.manifest, arrival_at=_datetime(text, fmt))
        elif qualifier == "329" and self.person is not None:
            birth = _birth_date(text, fmt)
            if isinstance(birth, date):
                self.person = replace(self.person, date_of_birth=birth)
            else:
                self.birth_text = birth
        # 36 (document expiry) and others: read past, not kept.

    def _seg_nad(self, seg: Segment) -> None:
        role = PERSON_QUALIFIERS.get(_get(seg, 1) or "")
        if role is None:
            return  # reporting party (NAD+MS) and the like: contact details, never kept
        self._close_person()
        # C080 party name: surname, then up to four given-name components. Address elements
        # (street, city, postcode, country) follow it and are never read.
        given = " ".join(c for c in (seg[4][1:5] if len(seg) > 4 else []) if c)
        self.person = Person(role=role, surname=_get(seg, 4, 0), given_names=given or None)

    def _seg_att(self, seg: Segment) -> None:
        if self.person is not None and _get(seg, 1) == "2":
            self.person = replace(self.person, sex=_get(seg, 3))

    def _seg_nat(self, seg: Segment) -> None:
        if self.person is not None:
            nation = _get(seg, 2)
            self.person = replace(self.person, nationality=_ICAO_NATIONS.get(nation or "", nation))

    def _seg_rff(self, seg: Segment) -> None:
        if self.person is None:
            return
        qualifier, value = _get(seg, 1, 0), _get(seg, 1, 1)
        if qualifier == VEHICLE_TRAVELS_IN:
            self.person = replace(self.person, vehicle_plate=value)
        elif qualifier == VEHICLE_DRIVES:
            self.person = replace(self.person, vehicle_plate=value, role="driver")
        # Reservation and booking references (AVF, ABO, ...): dropped at ingest.

    def _seg_doc(self, seg: Segment) -> None:
        if self.person is not None:
            self.person = replace(
                self.person, document_type=_get(seg, 1), document_number=_get(seg, 2)
            )

    def _seg_cnt(self, seg: Segment) -> None:
        if _get(seg, 1, 0) not in _COUNT_QUALIFIERS:
            return
        text = _get(seg, 1, 1)
        if text is None or not text.isdigit():
            raise _malformed("CNT control total is not a number")
        self.counts.append(int(text))


# DTM format code -> (digits, strptime pattern); two-digit years are handled by the callers.
_TIME_FORMATS: Final = {
    "201": (10, "%Y%m%d%H%M"),
    "203": (12, "%Y%m%d%H%M"),
    "204": (14, "%Y%m%d%H%M%S"),
}
_BIRTH_FORMATS: Final = {"101": 6, "102": 8}


def _datetime(text: str | None, fmt: str | None) -> datetime:
    """A ``DTM+189``/``232`` time by its format code (or, without one, by its length)."""
    if text is None or not text.isdigit():
        raise _malformed("DTM date-time is not a string of digits")
    if fmt is None:
        fmt = {10: "201", 12: "203", 14: "204"}.get(len(text))
    spec = _TIME_FORMATS.get(fmt or "")
    if spec is None:
        raise _malformed("DTM date-time format is not 201, 203 or 204")
    digits, pattern = spec
    if len(text) != digits:
        raise _malformed(f"DTM date-time has {len(text)} digits, format {fmt} has {digits}")
    # A voyage time with a two-digit year is in this century (strptime would put 69-99 in 19YY).
    full = "20" + text if fmt == "201" else text
    try:
        return datetime.strptime(full, pattern).replace(tzinfo=UTC)
    except ValueError:
        raise _malformed("DTM date-time is not a calendar time") from None


def _birth_date(text: str | None, fmt: str | None) -> date | str:
    """A ``DTM+329`` date of birth: the date (102), or the six digits to place later (101)."""
    if text is None or not text.isdigit():
        raise _malformed("DTM date of birth is not a string of digits")
    if fmt is None:
        fmt = {6: "101", 8: "102"}.get(len(text))
    digits = _BIRTH_FORMATS.get(fmt or "")
    if digits is None:
        raise _malformed("DTM date of birth format is not 101 (YYMMDD) or 102 (CCYYMMDD)")
    if len(text) != digits:
        raise _malformed(f"DTM date of birth has {len(text)} digits, format {fmt} has {digits}")
    if digits == 6:
        return text
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise _malformed("DTM date is not a calendar date") from None


def _short_birth_date(text: str, voyage: date) -> date:
    """``YYMMDD`` in the latest century that does not put the birth after ``voyage``.

    Example::

        _short_birth_date("310101", date(2026, 3, 1))  # 1931-01-01, not 2031
    """
    year, month, day = int(text[:2]), int(text[2:4]), int(text[4:])
    for century in (2000, 1900):
        try:
            birth = date(century + year, month, day)
        except ValueError:
            continue  # 29 February of a year that has none in this century (1900)
        if birth <= voyage:
            return birth
    raise _malformed("DTM date of birth is not a calendar date before the voyage")


# -- writing (simulator, tests, benchmarks) ----------------------------------------------------


def write_interchange(
    manifests: list[Manifest],
    *,
    reference: str = "1",
    separators: tuple[str, str, str, str, str, str] = DEFAULT_SEPARATORS,
    with_una: bool = True,
    groups: bool = False,
    syntax: str = "UNOY",
    sent_at: datetime | None = None,
    line_breaks: bool = False,
) -> bytes:
    """A PAXLST interchange for ``manifests`` (one UNH per manifest): the inverse of the parser.

    ``separators`` are (component, element, decimal, release, repetition, terminator).
    """
    comp, elem, _dec, rel, rep, term = separators
    special = {comp, elem, term} | ({rel} if rel != " " else set())

    def esc(text: str) -> str:
        if rel == " ":
            if any(c in special for c in text):
                raise ValueError("a value holds a separator and there is no release character")
            return text
        return "".join(rel + c if c in special else c for c in text)

    def seg(*elements: str | tuple[str | None, ...] | None) -> str:
        parts = []
        for e in elements:
            if e is None:
                parts.append("")
            elif isinstance(e, tuple):
                comps = [esc(c) if c is not None else "" for c in e]
                while comps and not comps[-1]:
                    comps.pop()
                parts.append(comp.join(comps))
            else:
                parts.append(esc(e))
        while parts and not parts[-1]:
            parts.pop()
        return elem.join(parts) + term + ("\n" if line_breaks else "")

    stamp = (sent_at or datetime(2026, 1, 1, tzinfo=UTC)).strftime("%y%m%d:%H%M")
    date_part, time_part = stamp.split(":")
    out = []
    if with_una:
        out.append("UNA" + comp + elem + _dec + rel + rep + term + ("\n" if line_breaks else ""))
    out.append(
        seg("UNB", (syntax, "4"), ("FERRYOP", "ZZZ"), ("NOCUSTOMS", "ZZZ"), (date_part, time_part),
            reference)
    )  # fmt: skip
    messages: list[str] = []
    for n, m in enumerate(manifests, start=1):
        messages.append(_message(m, str(n), seg))
    if groups:
        out.append(seg("UNG", "PAXLST", "FERRYOP", "NOCUSTOMS", (date_part, time_part),
                       "G" + reference, "UN", ("D", "05B")))  # fmt: skip
        out.extend(messages)
        out.append(seg("UNE", str(len(messages)), "G" + reference))
        out.append(seg("UNZ", "1", reference))
    else:
        out.extend(messages)
        out.append(seg("UNZ", str(len(messages)), reference))
    return "".join(out).encode(_CHARSETS[syntax])


def _message(m: Manifest, ref: str, seg: _SegmentWriter) -> str:
    crew = bool(m.people) and all(p.role == "crew" for p in m.people)
    body = [
        seg("BGM", "250" if crew else "745"),
        seg("NAD", "MS", None, None, ("FERRY OPERATOR CONTACT DESK",)),
        seg("COM", ("+4700000000", "TE")),
        seg("TDT", "20", m.voyage_id, None, None, m.carrier, None, None,
            (None, None, None, m.vessel)),
        seg("LOC", "125", m.departure_port),
        seg("DTM", ("189", _fmt_dt(m.departure_at), "203")),
        seg("LOC", "87", m.arrival_port),
        seg("DTM", ("232", _fmt_dt(m.arrival_at), "203")),
    ]  # fmt: skip
    for p in m.people:
        names = tuple((p.given_names or "").split(" ", 3)) if p.given_names else ()
        body.append(seg("NAD", "FM" if p.role == "crew" else "FL", None, None,
                        (p.surname, *names), "STREET 1", "TOWN", None, "0000", "NO"))  # fmt: skip
        if p.sex:
            body.append(seg("ATT", "2", None, p.sex))
        if p.date_of_birth:
            body.append(seg("DTM", ("329", p.date_of_birth.strftime("%Y%m%d"), "102")))
        body.append(seg("LOC", "178", m.departure_port))
        body.append(seg("LOC", "179", m.arrival_port))
        if p.nationality:
            body.append(seg("NAT", "2", p.nationality))
        body.append(seg("RFF", ("AVF", "BK" + ref + "X")))
        if p.vehicle_plate:
            qualifier = VEHICLE_DRIVES if p.role == "driver" else VEHICLE_TRAVELS_IN
            body.append(seg("RFF", (qualifier, p.vehicle_plate)))
        if p.document_type or p.document_number:
            body.append(seg("DOC", (p.document_type,), p.document_number))
            body.append(seg("DTM", ("36", "20301231", "102")))
            if p.document_issuing_country:
                body.append(seg("LOC", "91", p.document_issuing_country))
    body.append(seg("CNT", ("41" if crew else "42", str(len(m.people)))))
    head = seg("UNH", ref, ("PAXLST", "D", "05B", "UN", "IATA"))
    return head + "".join(body) + seg("UNT", str(len(body) + 2), ref)


class _SegmentWriter(Protocol):  # the type of ``seg`` inside write_interchange
    def __call__(self, *elements: str | tuple[str | None, ...] | None) -> str: ...


def _fmt_dt(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M") if value else None
