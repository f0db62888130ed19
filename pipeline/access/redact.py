"""SQL as the activity log keeps it: literals replaced by ``?``, each kept as a keyed pseudonym.

The log must show what a user asked without keeping the personal data they typed: a plate in
``WHERE plate = 'AB 12345'`` would otherwise outlive the plate's erasure and its legal limit in
the log (kept for years). So every string and number constant, every identifier with a digit
or quotes (``"AB12345"`` as an alias) and every comment leaves the text; each literal is kept
as the keyed pseudonym (:mod:`pipeline.pseudonym`) of its letters and digits, upper-cased,
which is what the dpo computes from a plate to find who searched for it. Text beyond
:data:`MAX_TEMPLATE_CHARS` is cut; a keyed MAC of the whole statement identifies it.

    redact_sql("SELECT * FROM plate_reads WHERE plate = 'ab-12 345'", pseudo, key)
    # {"sql": "SELECT * FROM plate_reads WHERE plate = ?", "literals": ["p_3f0c..."]}
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import duckdb

from pipeline.pseudonym import Pseudonymiser

MAX_TEMPLATE_CHARS = 4000
MAX_LITERALS = 200
# Names of views, columns, functions: letters and underscores only. Anything else a user
# may have typed as a name (a plate, a document number) is treated as a literal.
_PLAIN_NAME = re.compile(r"[A-Za-z_]+")
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"[0-9A-Za-z_.]+(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"\w+")
_COMMENT_OR_SPACE = re.compile(r"\s|--|/\*")
_DOLLAR_TAG = re.compile(r"\$[A-Za-z0-9_]*\$")
_NOT_PLATE = re.compile(r"[^A-Z0-9]")
_TYPES = duckdb.token_type


def redact_sql(sql: str, pseudo: Pseudonymiser, key: bytes) -> dict[str, Any]:
    """The log fields for ``sql``: ``sql`` (the template), ``literals`` and, when cut or not
    tokenisable, ``sql_chars`` and ``sql_mac``."""
    out: dict[str, Any] = {}
    try:
        template, literals = _template(sql)
    except (duckdb.Error, RuntimeError):
        template, literals = "?", []
    names = [pseudo.one(n) for n in (_plate_like(x) for x in literals) if n]
    out["sql"] = template[:MAX_TEMPLATE_CHARS]
    out["literals"] = names[:MAX_LITERALS]
    if template == "?" or len(template) > MAX_TEMPLATE_CHARS or len(names) > MAX_LITERALS:
        out["sql_chars"] = len(sql)
        out["sql_mac"] = hmac.new(key, sql.encode(), hashlib.sha256).hexdigest()
    return out


def holds_literal(template: str) -> bool:
    """True if a stored template still holds a literal: anything but the ``?`` placeholders
    (a template cut at :data:`MAX_TEMPLATE_CHARS` may end in half of one)."""
    try:
        _, literals = _template(template)
    except (duckdb.Error, RuntimeError):
        return True
    return any(x.strip('"? ') for x in literals)


def scrub(text: str, sql: str) -> str:
    """``text`` (a refusal's reason) without any literal of ``sql`` in it, in any case: the
    statement check quotes names the user typed ("'QXT12345' is not one of your views")."""
    try:
        _, literals = _template(sql)
    except (duckdb.Error, RuntimeError):
        return "(reason withheld: the statement could not be tokenised)"
    for literal in sorted({x for x in literals if x.strip()}, key=len, reverse=True):
        text = re.sub(re.escape(literal), "?", text, flags=re.IGNORECASE)
    return text


def _plate_like(literal: str) -> str:
    return _NOT_PLATE.sub("", literal.upper())


def _template(sql: str) -> tuple[str, list[str]]:
    tokens = duckdb.tokenize(sql)
    parts: list[str] = []
    literals: list[str] = []
    for index, (start, kind) in enumerate(tokens):
        end = tokens[index + 1][0] if index + 1 < len(tokens) else len(sql)
        gap = sql[start:end]
        if kind == _TYPES.string_const:
            literals.append(_quoted(gap) or gap)
            parts.append("?")
        elif kind == _TYPES.numeric_const:
            literals.append(_match(_NUMBER, gap) or gap)
            parts.append("?")
        elif kind == _TYPES.identifier:
            name = _identifier(gap)
            if name is not None and _PLAIN_NAME.fullmatch(name) and not gap.startswith('"'):
                parts.append(name)
            else:
                literals.append(name or gap)
                parts.append('"?"')
        elif kind == _TYPES.keyword:
            parts.append(_match(_WORD, gap) or "?")
        else:  # an operator, up to the space or comment after it
            cut = _COMMENT_OR_SPACE.search(gap)
            operator = gap[: cut.start()] if cut else gap
            parts.append(operator if operator.isascii() and "'" not in operator else "?")
    return " ".join(p for p in parts if p), literals


def _match(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.match(text)
    return found.group(0) if found else None


def _quoted(text: str) -> str | None:
    """The content of the string constant at the start of ``text`` ('..', E'..', $tag$..$tag$)."""
    tag = _DOLLAR_TAG.match(text)
    if tag:
        close = text.find(tag.group(0), tag.end())
        return text[tag.end() : close] if close >= 0 else None
    quote = text.find("'")
    if quote < 0 or quote > 2:
        return None
    return _until_quote(text, quote, "'")


def _identifier(text: str) -> str | None:
    if text.startswith('"'):
        return _until_quote(text, 0, '"')
    return _match(_BARE_NAME, text)


def _until_quote(text: str, opening: int, quote: str) -> str | None:
    """Text between the quote at ``opening`` and its closing quote (doubled quotes escape)."""
    out, i = [], opening + 1
    while i < len(text):
        if text[i] == quote:
            if text[i + 1 : i + 2] == quote:
                out.append(quote)
                i += 2
                continue
            return "".join(out)
        out.append(text[i])
        i += 1
    return None
