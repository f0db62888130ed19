r"""Plate text normalisation and per-country format checks, vectorised with pyarrow.compute.

Normalisation (the stored ``plate`` column and the watchlist key):

1. Unicode NFKC, so full-width and compatibility forms become plain letters and digits;
2. upper case;
3. look-alike folding: the Cyrillic and Greek capitals that look like Latin letters (the
   table ``_FOLDS``, one commented line per letter; lower-case forms reach it upper-cased)
   become their Latin twins, so ``"\u0410\u0412 12345"`` typed with Cyrillic A and VE is
   ``"AB12345"``; the letters A-ring, A/O/U-umlaut (``\u00c5 \u00c4 \u00d6 \u00dc``) fold to
   ``A A O U``;
4. separators are removed: whitespace, dashes (any Unicode dash), ``.``, ``_``, ``·`` and
   invisible format characters (zero-width space, soft hyphen, ...), which could otherwise be
   used to slip a plate past the watchlist.

Why fold the Nordic and German letters instead of allowing them: German area codes with an
umlaut (Tübingen, Lörrach) are real, but cameras read the umlaut inconsistently, and the lake
stores the normalised plate as ``[A-Z0-9]`` only; the raw text keeps the diacritic. Every other
character left after these steps makes the plate invalid. Steps 1-4 are repeated until nothing
changes (rarely more than once), which makes :func:`normalise_plate` idempotent.

Format rules, on the normalised text, chosen by the country the *camera* reported (never
guessed from the text). Every format requires at least one letter.

- NO: 2 letters + 4-5 digits (standard; the electric EL/EK/EV/EB/... and diplomatic CD
  series fit too), or personalised 2-7 letters/digits. ``AB12345``, ``EL1234``, ``XYZ7``
- SE: 3 letters + 2 digits + a digit or letter, or personalised 2-7. ``ABC123``, ``ABC12A``
- FI: 2-3 letters + 1-3 digits. ``ABC123``, ``AB1``
- DK: 2 letters + 5 digits. ``AB12345``
- DE: area of 1-3 letters + 1-2 letters + 1-4 digits, optional E (electric) or H (historic).
  ``BAB1234``, ``MA1E``
- PL: 2-3 letters + 4-5 letters/digits. ``WA12345``, ``KR1A234``
- LT: 3 letters + 3 digits. ``ABC123``
- RU: letter + 3 digits + 2 letters + 2-3 digit region, in the Latin twins of the Cyrillic
  letters Russian plates use (folded in step 3). ``A123BC77``
- any other country: 2-10 letters/digits with at least one letter and one digit. ``AB12CDE``

The German total length limit (8 characters) is not enforced: without the separator between
area and letters the split is ambiguous, and a camera's read is what it is.

Example::

    normalise_plate("ab 123-45")          # "AB12345"
    normalise_plates(raw, countries)      # (normalised texts, valid mask)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)


def _alnum_with_letter(shortest: int, longest: int) -> str:
    """RE2 for shortest..longest of [A-Z0-9] holding at least one letter (RE2 has no lookahead).

    Alternative k: k digits, then the first letter, then the rest.
    """
    return "|".join(
        f"[0-9]{{{k}}}[A-Z][A-Z0-9]{{{max(shortest - k - 1, 0)},{longest - k - 1}}}"
        for k in range(longest)
    )


# Country -> RE2 pattern for the whole normalised plate (anchored where used). Each pattern
# only accepts texts with at least one letter.
PLATE_FORMATS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "NO": r"[A-Z]{2}[0-9]{4,5}|" + _alnum_with_letter(2, 7),
        "SE": r"[A-Z]{3}[0-9]{2}[A-Z0-9]|" + _alnum_with_letter(2, 7),
        "FI": r"[A-Z]{2,3}[0-9]{1,3}",
        "DK": r"[A-Z]{2}[0-9]{5}",
        "DE": r"[A-Z]{1,3}[A-Z]{1,2}[0-9]{1,4}[EH]?",
        "PL": r"[A-Z]{2,3}[A-Z0-9]{4,5}",
        "LT": r"[A-Z]{3}[0-9]{3}",
        "RU": r"[ABEKMHOPCTYX][0-9]{3}[ABEKMHOPCTYX]{2}[0-9]{2,3}",
    }
)
# Any other country: 2-10 letters/digits with at least one letter and one digit.
GENERIC_FORMAT: Final = r"[A-Z0-9]{2,10}"

# Upper-case sources only: step 2 has already upper-cased the lower-case look-alikes.
_FOLDS: Final[tuple[tuple[str, str], ...]] = (
    # Cyrillic
    ("\u0410", "A"),  # CYRILLIC CAPITAL LETTER A
    ("\u0412", "B"),  # CYRILLIC CAPITAL LETTER VE
    ("\u0415", "E"),  # CYRILLIC CAPITAL LETTER IE
    ("\u041a", "K"),  # CYRILLIC CAPITAL LETTER KA
    ("\u041c", "M"),  # CYRILLIC CAPITAL LETTER EM
    ("\u041d", "H"),  # CYRILLIC CAPITAL LETTER EN
    ("\u041e", "O"),  # CYRILLIC CAPITAL LETTER O
    ("\u0420", "P"),  # CYRILLIC CAPITAL LETTER ER
    ("\u0421", "C"),  # CYRILLIC CAPITAL LETTER ES
    ("\u0422", "T"),  # CYRILLIC CAPITAL LETTER TE
    ("\u0425", "X"),  # CYRILLIC CAPITAL LETTER HA
    ("\u0423", "Y"),  # CYRILLIC CAPITAL LETTER U
    ("\u0406", "I"),  # CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I
    ("\u0408", "J"),  # CYRILLIC CAPITAL LETTER JE
    ("\u0405", "S"),  # CYRILLIC CAPITAL LETTER DZE
    # Greek
    ("\u0391", "A"),  # GREEK CAPITAL LETTER ALPHA
    ("\u0392", "B"),  # GREEK CAPITAL LETTER BETA
    ("\u0395", "E"),  # GREEK CAPITAL LETTER EPSILON
    ("\u0396", "Z"),  # GREEK CAPITAL LETTER ZETA
    ("\u0397", "H"),  # GREEK CAPITAL LETTER ETA
    ("\u0399", "I"),  # GREEK CAPITAL LETTER IOTA
    ("\u039a", "K"),  # GREEK CAPITAL LETTER KAPPA
    ("\u039c", "M"),  # GREEK CAPITAL LETTER MU
    ("\u039d", "N"),  # GREEK CAPITAL LETTER NU
    ("\u039f", "O"),  # GREEK CAPITAL LETTER OMICRON
    ("\u03a1", "P"),  # GREEK CAPITAL LETTER RHO
    ("\u03a4", "T"),  # GREEK CAPITAL LETTER TAU
    ("\u03a5", "Y"),  # GREEK CAPITAL LETTER UPSILON
    ("\u03a7", "X"),  # GREEK CAPITAL LETTER CHI
    # Nordic and German letters (see the module docstring)
    ("\u00c5", "A"),  # LATIN CAPITAL LETTER A WITH RING ABOVE
    ("\u00c4", "A"),  # LATIN CAPITAL LETTER A WITH DIAERESIS
    ("\u00d6", "O"),  # LATIN CAPITAL LETTER O WITH DIAERESIS
    ("\u00dc", "U"),  # LATIN CAPITAL LETTER U WITH DIAERESIS
)
_SEPARATORS: Final = r"[\s\v\p{Z}\p{Pd}\p{Cf}._\x{00B7}]+"
# Enough for any input seen in tests and fuzzing; a row still changing after this many
# rounds is left as it is (it holds non-[A-Z0-9] characters, so it is invalid anyway).
_MAX_ROUNDS: Final = 8

_KNOWN_COUNTRIES: Final = pa.array(sorted(PLATE_FORMATS), pa.string())
_COUNTRY_FORMATS: Final = (
    "^(?:" + "|".join(f"{c}\\|(?:{p})" for c, p in sorted(PLATE_FORMATS.items())) + ")$"
)


def normalise_plates(
    raw: pa.StringArray, countries: pa.StringArray
) -> tuple[pa.StringArray, pa.BooleanArray]:
    """Normalise plate texts and check them against their country's format.

    Returns ``(normalised, valid)``: a string array (null where ``raw`` is null) and a boolean
    array without nulls (a null plate or country is invalid). Both inputs may also be
    chunked arrays; they must have the same length.
    """
    raw = _as_array(raw)
    countries = _as_array(countries)
    if len(raw) != len(countries):
        raise ValueError("raw and countries must have the same length")
    normalised = _normalise(raw)
    return normalised, _valid(normalised, countries)


def normalise_plate(raw: str) -> str:
    """Normalise one plate text (same rules as :func:`normalise_plates`)."""
    result = _normalise(pa.array([raw], pa.string()))[0].as_py()
    return str(result)


def is_valid_plate(raw: str, country: str) -> bool:
    """True if ``raw``, once normalised, fits the plate format of ``country``."""
    _, valid = normalise_plates(pa.array([raw], pa.string()), pa.array([country], pa.string()))
    return bool(valid[0].as_py())


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values


def _normalise(raw: pa.Array) -> pa.Array:
    # For ASCII text NFKC and look-alike folding are identities, so the common path is an
    # upper-casing and a literal replace; only non-ASCII rows pay for the Unicode steps.
    out = _strip(pc.ascii_upper(raw))
    non_ascii = pc.invert(pc.string_is_ascii(raw)).fill_null(False)
    if not pc.any(non_ascii).as_py():
        return out
    rows = raw.filter(non_ascii)
    for _ in range(_MAX_ROUNDS):
        step = _strip(_fold(pc.utf8_upper(pc.utf8_normalize(rows, form="NFKC"))))
        if step.equals(rows):
            break
        rows = step
    return pc.replace_with_mask(out, non_ascii, rows)


def _fold(upper: pa.Array) -> pa.Array:
    for source, target in _FOLDS:
        upper = pc.replace_substring(upper, source, target)
    return upper


def _strip(text: pa.Array) -> pa.Array:
    # Most plates arrive as "AB 12345": a literal replace handles the space at a fraction of
    # the regex's cost, and only rows with anything else left pay for the regex.
    text = pc.replace_substring(text, " ", "")
    rest = pc.invert(pc.ascii_is_alnum(text)).fill_null(False)
    if not pc.any(rest).as_py():
        return text
    stripped = pc.replace_substring_regex(text.filter(rest), _SEPARATORS, "")
    return pc.replace_with_mask(text, rest, stripped)


def _valid(normalised: pa.Array, countries: pa.Array) -> pa.Array:
    known = pc.is_in(countries, value_set=_KNOWN_COUNTRIES)
    key = pc.binary_join_element_wise(countries, normalised, "|")
    fits = pc.match_substring_regex(key, _COUNTRY_FORMATS)
    if not pc.all(known.fill_null(True)).as_py():
        generic = pc.and_(
            pc.match_substring_regex(normalised, f"^(?:{GENERIC_FORMAT})$"),
            pc.and_(
                pc.match_substring_regex(normalised, "[A-Z]"),
                pc.match_substring_regex(normalised, "[0-9]"),
            ),
        )
        fits = pc.if_else(known, fits, generic)
    # A null country is invalid (is_in says False for it, which would pick the generic rule).
    return pc.and_(fits.fill_null(False), pc.is_valid(countries))
