"""Result shapes the activity log can attribute: a subject column leaves a query as it is.

``query.end`` names whose rows a query returned by finding keyed pseudonyms (and, for roles
with clear plates, plate-like words) in the result's values (:meth:`AccessSession.
result_pseudonyms`). ``md5(plate_pseudonym)``, ``reverse(plate)`` or a ``substr`` piece would
hide them, so a statement may return a subject column (or anything computed from one) only
through functions that keep the value findable: casts, ``upper``/``lower``, one-argument
``trim``, ``coalesce``, ``min``/``max``/``first``/``any_value``/``arg_max``..., ``list`` and
struct constructors, ``lag``/``lead``, ``CASE`` branches; text concatenation only where the
value is a pseudonym (a pseudonym is found anywhere in a text; a clear plate glued to other
letters is not a plate-like word any more). Anything else is refused.

The lineage is by name and over-approximates: the tainted names are the subject columns, every
alias, CTE or subquery column-list name, ``UNPIVOT`` value column and ``* RENAME/REPLACE`` name
whose expression returns a tainted value (to a fixpoint), and every relation name or alias used
as a value (``md5(t::VARCHAR)`` is a whole row). Filters (``WHERE``, ``JOIN ... ON``,
``HAVING``, ``QUALIFY``, ``FILTER``, ``CASE WHEN``, window partitions and orders) and
aggregates that return no subject value (``count``, ``count(DISTINCT ...)``) are not checked:
what they reveal depends on literals the log already keeps as keyed pseudonyms. Every
``SELECT`` list at any depth counts as returned, subqueries in filters included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pipeline.lake.tables import LAKE_TABLES

PSEUDONYM_COLUMN = "plate_pseudonym"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")
# Aggregates whose output holds no input value.
_COUNTS = frozenset({"count", "count_star", "approx_count_distinct"})
# Functions and operators whose output holds their (tainted) input as it was, or upper/lower
# case, or as an element of a list, struct or JSON text: the result check still finds it.
_PRESERVING = frozenset(
    {
        "upper", "lower", "ucase", "lcase", "coalesce", "ifnull", "nullif", "greatest", "least",
        "min", "max", "first", "last", "any_value", "arbitrary", "arg_min", "arg_max", "min_by",
        "max_by", "argmin", "argmax", "mode", "list", "array_agg", "lag", "lead",
        "first_value", "last_value", "nth_value", "struct_pack", "row", "list_value",
        "list_pack", "array_value", "list_distinct", "array_distinct", "list_sort",
        "array_sort", "list_reverse_sort", "flatten", "list_concat", "array_concat",
        "list_cat", "array_cat", "unnest", "to_json", "json_object", "json_array",
        "struct_extract", "struct_extract_at", "operator_coalesce",
    }
)  # fmt: skip
# Text joining: keeps a pseudonym findable, not a clear plate (``plate || 'X'``).
_JOINING = frozenset(
    {"concat", "concat_ws", "||", "string_agg", "group_concat", "listagg", "array_to_string",
     "list_to_string"}
)  # fmt: skip
# Trimming only whitespace keeps the value; trim(x, 'chars') cuts it.
_ONE_ARGUMENT = frozenset({"trim", "ltrim", "rtrim"})
# Keys of an expression that hold filters, orderings or frames, not values it returns.
_NOT_RETURNED = frozenset(
    {"filter", "order_bys", "partitions", "orders", "start_expr", "end_expr", "offset_expr",
     "filter_expr", "arg_orders", "when_expr"}
)  # fmt: skip
RULE = (
    "a plate or pseudonym column may be returned only as it is (or cast, upper/lower, "
    "trimmed, in a list or struct{joining}), so the activity log can name whose rows a "
    "query returned; {what} of one is not allowed"
)


def subject_columns(*, clear_plates: bool) -> frozenset[str]:
    """The columns that name a subject: every plate column of the table registry (and its
    raw text), plus the analyst's pseudonym."""
    names = {PSEUDONYM_COLUMN}
    for spec in LAKE_TABLES.values():
        for column in (*spec.plate_columns, *spec.plate_lists):
            names.add(column)
            if f"{column}_raw" in spec.schema.names:
                names.add(f"{column}_raw")
    return frozenset(names) if clear_plates else frozenset({PSEUDONYM_COLUMN})


def violations(node: Any, subjects: frozenset[str], *, clear_plates: bool) -> Iterator[str]:
    """Every returned expression under ``node`` (a statement's syntax tree) that transforms a
    subject value beyond what the result check finds."""
    nodes = list(_walk(node))
    relations = frozenset(_relation_names(nodes))
    tainted = set(subjects)
    lineage = _Lineage(tainted, relations, clear_plates)
    while True:  # to a fixpoint: each pass can only add names
        size = len(tainted)
        for current in nodes:
            lineage.propagate(current)
        if len(tainted) == size:
            break
    for current in nodes:
        if current.get("type") == "SELECT_NODE":
            for expression in current.get("select_list") or ():
                yield from lineage.returned(expression)
        elif current.get("type") == "PIVOT":
            for expression in current.get("aggregates") or ():
                yield from lineage.returned(expression)


class _Lineage:
    def __init__(self, tainted: set[str], relations: frozenset[str], clear: bool) -> None:
        self.tainted = tainted
        self.relations = relations
        self.clear = clear
        # A tainted expression returned without an alias gets a name DuckDB makes from its
        # text ("upper(x)"): then every name that is not a plain identifier counts as tainted.
        self.unnamed = False

    def propagate(self, node: Mapping[str, Any]) -> None:
        """Add the names ``node`` gives to tainted values."""
        kind = node.get("type")
        if kind == "SELECT_NODE":
            for expression in node.get("select_list") or ():
                if isinstance(expression, Mapping) and self.output(expression):
                    alias = str(expression.get("alias") or "").lower()
                    if alias:
                        self.tainted.add(alias)
                    elif expression.get("class") not in ("COLUMN_REF", "STAR"):
                        self.unnamed = True
        if kind == "STAR" or node.get("class") == "STAR":
            # * RENAME (a AS b), * REPLACE (f(a) AS a): over-approximate, every name named.
            self.tainted.update(_strings(node.get("rename_list")))
            self.tainted.update(_strings(node.get("replace_list")))
        if kind == "PIVOT":
            self.tainted.update(s.lower() for s in node.get("unpivot_names") or ())
        aliases = [str(a).lower() for a in node.get("column_name_alias") or ()]
        if kind == "BASE_TABLE" and aliases:
            self.tainted.update(aliases)  # a view's columns renamed by position
        elif kind == "SUBQUERY" and aliases and self.body(node.get("subquery")):
            self.tainted.update(aliases)
        elif kind == "TABLE_FUNCTION" and "class" not in node:
            # unnest([plate]) u(x): the function's column (named after it, or renamed).
            function = node.get("function") or {}
            if any(self.output(a) for a in _arguments(function)):
                self.tainted.update(aliases)
                self.tainted.add(_name(function))
        cte_map = node.get("cte_map")
        if isinstance(cte_map, Mapping):
            for entry in cte_map.get("map") or ():
                value = entry.get("value") or {}
                names = [str(a).lower() for a in value.get("aliases") or ()]
                if names and self.body(value.get("query")):
                    self.tainted.update(names)

    def body(self, query: Any) -> bool:
        """Whether a subquery or CTE body returns a tainted value (any of its SELECT lists)."""
        for node in _walk(query):
            if node.get("type") == "SELECT_NODE":
                for expression in node.get("select_list") or ():
                    if isinstance(expression, Mapping) and self.output(expression):
                        return True
        return False

    def output(self, expression: Mapping[str, Any]) -> bool:
        """Whether ``expression``'s value may hold a subject value (refusals aside)."""
        return self._value(expression, [])

    def returned(self, expression: Any) -> list[str]:
        """The refusals of one returned expression."""
        found: list[str] = []
        if isinstance(expression, Mapping):
            self._value(expression, found)
        return found

    def _value(self, e: Mapping[str, Any], found: list[str]) -> bool:
        """Whether ``e`` returns a tainted value; appends a refusal to ``found`` where a
        tainted value goes through a function that would hide it."""
        cls = e.get("class")
        if cls == "COLUMN_REF":
            names = [str(n).lower() for n in e.get("column_names") or ()]
            if len(names) == 1 and names[0] in self.relations:
                return True  # a whole row as a value
            if self.unnamed and not all(_IDENTIFIER.fullmatch(n) for n in names):
                return True
            return any(n in self.tainted for n in names)
        if cls in {"STAR", "POSITIONAL_REFERENCE"}:
            for item in e.get("replace_list") or ():
                value = item.get("value") if isinstance(item, Mapping) else None
                if isinstance(value, Mapping):
                    self._value(value, found)
            return True  # may include a subject column
        if cls in ("CONSTANT", "PARAMETER", "DEFAULT"):
            return False
        if cls == "SUBQUERY":
            if e.get("subquery_type") == "SCALAR":
                return self.body((e.get("subquery") or {}).get("node"))
            return False  # EXISTS, IN, ANY: a truth value, a filter
        if cls == "CASE":
            branches = [c.get("then_expr") for c in e.get("case_checks") or ()]
            branches.append(e.get("else_expr"))
            out = False
            for branch in branches:
                if isinstance(branch, Mapping):
                    out = self._value(branch, found) or out
            return out
        arguments = [a for a in _arguments(e) if isinstance(a, Mapping)]
        tainted = False
        for argument in arguments:
            tainted = self._value(argument, found) or tainted
        if not tainted:
            return False
        name = _name(e)
        if cls in ("CAST", "COLLATE") or name in _PRESERVING:
            return True
        if name in _ONE_ARGUMENT and len(arguments) == 1:
            return True
        if name in _JOINING and not self.clear:
            return True
        if name in _COUNTS:
            return False
        joining = ", concatenated" if not self.clear else ""
        found.append(RULE.format(joining=joining, what=f"{name}()"))
        return True


def _name(expression: Mapping[str, Any]) -> str:
    name = expression.get("function_name")
    return str(name if name is not None else expression.get("type", "")).lower()


def _arguments(expression: Mapping[str, Any]) -> Iterator[Any]:
    for key, value in expression.items():
        if key in _NOT_RETURNED:
            continue
        if isinstance(value, Mapping) and "class" in value:
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, Mapping) and "class" in v)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value.lower()
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, Mapping):
            yield current
            stack.extend(v for v in current.values() if isinstance(v, list | Mapping))


def _relation_names(nodes: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Names a row of a relation goes by: tables, views, CTEs and every alias of a FROM item."""
    for node in nodes:
        kind = node.get("type")
        if kind in ("BASE_TABLE", "SUBQUERY", "TABLE_FUNCTION", "PIVOT", "JOIN") and (
            "class" not in node
        ):
            if node.get("alias"):
                yield str(node["alias"]).lower()
            if kind == "BASE_TABLE" and node.get("table_name"):
                yield str(node["table_name"]).lower()
        cte_map = node.get("cte_map")
        if isinstance(cte_map, Mapping):
            for entry in cte_map.get("map") or ():
                yield str(entry.get("key", "")).lower()
