"""Plate countries: ISO 3166-1 alpha-2 codes, vendor spellings, and "unknown".

A read's ``plate_country`` is an assigned ISO 3166-1 alpha-2 code or
:data:`~pipeline.schemas.UNKNOWN_COUNTRY` (``ZZ``); nothing is ever mapped to a country it does
not name. Unknown countries are validated by the generic plate rule
(:mod:`pipeline.reference.plates`) and counted (``anpr_vendor_quirks_total``, quirk
``country_unknown``).

:func:`vendor_country` reads a vendor's code:

- absent, empty, ``-``, ``NON`` (Hikvision: no country recognised): unknown;
- upper-cased and split on ``-``/``_``: ``de-by``, ``us-mo`` -> DE, US (the country of a
  subdivision); ``eu-no`` -> NO (a multi-country prefix is skipped);
- ``UK`` -> GB, ``EL`` -> GR, alpha-3 codes (``NOR`` -> NO, ...) -> alpha-2;
- a bare two-letter code is a country, except where the vendor's bare codes are subdivisions:
  with ``context`` (OpenALPR's ``country`` beside a bare ``region``) it is a subdivision of that
  country; with ``bare_may_be_subdivision`` (Genetec ``State``) a US state or Canadian province
  code (``CA``, ``MO``, ``DE``, ...) is unknown, because California and Canada cannot be told
  apart;
- anything else (an unassigned code such as ``XX``, a region we cannot place): unknown.

Example::

    vendor_country("us-mo")                                  # "US"
    vendor_country("mo", context="us")                        # "US", never Macao
    vendor_country("CA", bare_may_be_subdivision=True)        # "ZZ"
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.schemas import UNKNOWN_COUNTRY

# The quirk that counts reads stored with the country unknown (anpr_vendor_quirks_total).
COUNTRY_UNKNOWN: Final = "country_unknown"

_ISO_ALPHA2_CODES: Final = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW XK
"""
# Assigned codes, plus XK (Kosovo: not assigned, but the code every registry and the EU use).
ISO_ALPHA2: Final = frozenset(_ISO_ALPHA2_CODES.split())
# Vendor spellings that are not ISO alpha-2: EU usage (UK, EL) and the alpha-3 codes of the
# countries whose vehicles cross into Norway; Hikvision firmware differs on which it sends.
_ALPHA3_CODES: Final = """
    NOR=NO SWE=SE FIN=FI DNK=DK ISL=IS FRO=FO DEU=DE POL=PL LTU=LT LVA=LV EST=EE RUS=RU
    BLR=BY UKR=UA NLD=NL BEL=BE LUX=LU FRA=FR GBR=GB IRL=IE ESP=ES PRT=PT ITA=IT AUT=AT
    CHE=CH LIE=LI CZE=CZ SVK=SK HUN=HU ROU=RO BGR=BG SVN=SI HRV=HR SRB=RS BIH=BA MNE=ME
    MKD=MK ALB=AL GRC=GR TUR=TR CYP=CY MLT=MT MDA=MD GEO=GE ARM=AM AZE=AZ KAZ=KZ USA=US
    CAN=CA XKX=XK
"""
_ALIASES: Final = {
    "UK": "GB",
    "EL": "GR",
    **dict(pair.split("=", 1) for pair in _ALPHA3_CODES.split()),
}
# Two-letter codes of US states, DC and territories, and of Canadian provinces and territories:
# as a bare code from a vendor that sends subdivisions, any of them may not be a country.
_SUBDIVISION_CODES: Final = """
    AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ
    NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU VI AS MP UM
    AB BC MB NB NL NS NT NU ON PE QC SK YT
"""
SUBDIVISION_CODES: Final = frozenset(_SUBDIVISION_CODES.split())
# Prefixes that name a group of countries, followed by the country (OpenALPR ``eu-no``).
_MULTI_COUNTRY: Final = frozenset({"EU"})
_NONE: Final = frozenset({"", "-", "NON", "NONE", "UNKNOWN"})
_SPLIT: Final = re.compile(r"[-_]")
_KNOWN_ARRAY: Final = pa.array(sorted(ISO_ALPHA2), pa.string())


def vendor_country(
    code: str | None,
    *,
    context: str | None = None,
    bare_may_be_subdivision: bool = False,
) -> str:
    """The ISO alpha-2 country a vendor's plate region names, or ``ZZ``; see the module doc."""
    if code is None:
        return UNKNOWN_COUNTRY
    text = code.strip().upper()
    if text in _NONE or len(text) > 16:
        return UNKNOWN_COUNTRY
    parts = _SPLIT.split(text)
    if len(parts) > 1:
        head = parts[1] if parts[0] in _MULTI_COUNTRY else parts[0]
        return _country(head)
    if len(text) == 2 and context is not None:
        # A bare region beside the payload's country is a subdivision of that country.
        outer = vendor_country(context)
        if outer != UNKNOWN_COUNTRY:
            return outer
    if bare_may_be_subdivision and text in SUBDIVISION_CODES:
        return UNKNOWN_COUNTRY
    return _country(text)


def _country(text: str) -> str:
    code = _ALIASES.get(text, text)
    return code if code in ISO_ALPHA2 else UNKNOWN_COUNTRY


def known_countries(codes: pa.Array) -> pa.Array:
    """Codes that name no country (``XX``, ``ZZ``, ...) as ``ZZ``; nulls stay null."""
    named = pc.is_in(codes, value_set=_KNOWN_ARRAY)
    return pc.if_else(pc.or_kleene(named, pc.is_null(codes)), codes, UNKNOWN_COUNTRY)
