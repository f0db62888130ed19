"""The statement check: one SELECT over the role's views, nothing else.

DuckDB's own parser (``json_serialize_sql``, which serialises SELECT statements only) turns the
text into its syntax tree, and the whole tree is walked:

- exactly one statement, and it must be a SELECT (any other kind does not serialise);
- every table reference is an unqualified name of one of the role's views, or of a CTE in
  scope at that point; no time travel (``AT (VERSION => ...)``);
- no table functions (``read_parquet``, ``glob``, ``query``, ``sqlite_scan``, ``duckdb_*``,
  ``ducklake_*`` ...) except a few generators (``range``, ``unnest``);
- functions are DuckDB's built-in ones minus those that reveal the session, settings, paths or
  other queries (``current_setting``, ``getvariable``, ``stats``, ...); extension functions and
  our own pseudonym function cannot be called;
- a plate or pseudonym column is returned only in a form the activity log's result check
  finds (:mod:`pipeline.access.attribution`: no ``md5(plate)``, ``substr`` pieces...).

Why a check as well as DuckDB's settings: after ``enable_external_access = false`` and
``lock_configuration = true`` DuckDB 1.5.5 still lets a session ``read_parquet`` and ``glob``
inside the allowed data directory (the lake's own files: every row, unfiltered), read the
catalog through ``sqlite_scan`` (SQLite opens files itself), list paths with
``duckdb_databases()`` and ``ducklake_list_files``, time-travel, ``DETACH`` and ``ATTACH
':memory:'``. Measured in tests/integration/test_access.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb

from pipeline.access import attribution
from pipeline.errors import UsageError

MAX_SQL_CHARS = 20_000
# Control characters other than tab and line breaks: DuckDB's parser stops at a NUL, so the
# text logged would differ from the text run; none has a use in a query.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Table functions that only generate values.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Built-in scalar functions and macros that reveal something outside the views.
DENIED_FUNCTIONS = frozenset(
    {
        "current_setting", "getvariable", "current_database", "current_catalog",
        "current_schema", "current_schemas", "current_query", "current_query_id",
        "current_connection_id", "current_transaction_id", "txid_current", "current_role",
        "current_user", "session_user", "user", "in_search_path", "nextval", "currval",
        "json_serialize_sql", "json_deserialize_sql", "json_execute_serialized_sql",
        "json_serialize_plan", "stats", "write_log", "parse_duckdb_log_message",
        "pg_conf_load_time", "pg_my_temp_schema", "pg_is_other_temp_schema",
        "pg_table_is_visible", "pg_conversion_is_visible", "pg_get_viewdef",
        "pg_get_constraintdef", "pg_get_expr", "has_any_column_privilege",
        "has_column_privilege", "has_database_privilege", "has_schema_privilege",
        "has_sequence_privilege", "has_table_privilege", "has_tablespace_privilege",
        "col_description", "obj_description", "shobj_description", "format_pg_type",
        "format_type", "pg_typeof",
    }
)  # fmt: skip


class QueryRefused(UsageError):
    """A statement outside what the session allows; ``why`` says which rule it broke."""

    def __init__(self, why: str) -> None:
        super().__init__(f"query refused: {why}")
        self.why = why


@dataclass(frozen=True)
class Allowed:
    """What a statement may name: the role's view names; what it may return: its subject
    columns (plates, pseudonyms) only as :mod:`pipeline.access.attribution` allows."""

    views: frozenset[str]
    subjects: frozenset[str] = frozenset()
    clear_plates: bool = False  # the role sees clear plates: text joining would hide them


@cache
def _builtin_functions() -> frozenset[str]:
    """Names of DuckDB's built-in non-table functions (a bare connection, no extensions)."""
    con = duckdb.connect(":memory:", config={"autoload_known_extensions": False})
    try:
        rows = con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type NOT IN ('table', 'table_macro', 'pragma')"
        ).fetchall()
    finally:
        con.close()
    # unnest is a table function to duckdb_functions() but also works in a select list.
    return (frozenset(str(name) for (name,) in rows) | {"unnest"}) - DENIED_FUNCTIONS


def parse(sql: str) -> dict[str, Any]:
    """DuckDB's syntax tree of one SELECT statement, or :class:`QueryRefused`."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"statement longer than {MAX_SQL_CHARS} characters")
    control = _CONTROL.search(sql)
    if control:
        raise QueryRefused(f"control character U+{ord(control.group()):04X} in the statement")
    con = duckdb.connect(":memory:", config={"autoload_known_extensions": False})
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryRefused(f"does not parse: {_first_line(exc)}") from None
        if len(statements) == 2 and statements[0].type == duckdb.StatementType.CREATE:
            # DuckDB turns a PIVOT without IN list into CREATE TYPE ... AS ENUM + SELECT.
            raise QueryRefused("PIVOT needs its values listed: PIVOT ... ON column IN (...)")
        if len(statements) != 1:
            raise QueryRefused(f"exactly one statement is allowed, got {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise QueryRefused(f"only SELECT is allowed, got {statements[0].type.name}")
        row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    finally:
        con.close()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    found: list[dict[str, Any]] = list(tree.get("statements") or ())
    if tree.get("error") or len(found) != 1:
        raise QueryRefused(f"only a single SELECT is allowed ({tree.get('error_message', '')})")
    node: dict[str, Any] = found[0]["node"]
    return node


def check(sql: str, allowed: Allowed) -> str:
    """Return ``sql`` if it is one SELECT over ``allowed`` views only; else raise."""
    try:
        node = parse(sql)
        for why in _violations(node, frozenset(), allowed):
            raise QueryRefused(why)
        for why in attribution.violations(
            node, allowed.subjects, clear_plates=allowed.clear_plates
        ):
            raise QueryRefused(why)
    except RecursionError:
        raise QueryRefused("statement nested too deeply") from None
    return sql


def _violations(node: Any, ctes: frozenset[str], allowed: Allowed) -> Iterator[str]:
    """Every rule broken anywhere under ``node``; ``ctes`` are the CTE names in scope."""
    if isinstance(node, list):
        for item in node:
            yield from _violations(item, ctes, allowed)
        return
    if not isinstance(node, Mapping):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, Mapping):
        entries = list(cte_map.get("map") or ())
        for entry in entries:
            # A CTE's body sees the CTEs defined before it, not itself (unless recursive: then
            # its RECURSIVE_CTE_NODE names it), nor the ones after it.
            yield from _violations(entry.get("value"), ctes, allowed)
            ctes = ctes | {str(entry.get("key", "")).lower()}
    yield from _check_node(node, ctes, allowed)
    inner = ctes
    if node.get("type") == "RECURSIVE_CTE_NODE":
        # DuckDB binds the anchor (left) without the CTE's own name: only the recursive member
        # (right) may read it. Naming it in scope for the anchor let a file path through.
        inner = ctes | {str(node.get("cte_name", "")).lower()}
    for key, value in node.items():
        if key != "cte_map":
            yield from _violations(value, inner if key == "right" else ctes, allowed)


def _check_node(node: Mapping[str, Any], ctes: frozenset[str], allowed: Allowed) -> Iterable[str]:
    kind = node.get("type")
    if not isinstance(kind, str):
        return
    if kind == "BASE_TABLE":
        name = str(node.get("table_name", ""))
        if node.get("catalog_name") or node.get("schema_name"):
            yield f"qualified table names are not allowed ({name})"
        elif node.get("at_clause"):
            yield "time travel (AT ...) is not allowed"
        elif name.lower() not in allowed.views and name.lower() not in ctes:
            yield f"{name!r} is not one of your views: {', '.join(sorted(allowed.views))}"
    elif kind == "SHOW_REF":
        if node.get("table_name") or node.get("catalog_name") or node.get("schema_name"):
            yield "SHOW of catalog objects is not allowed"
    elif kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        name = str(function.get("function_name", ""))
        if name.lower() not in ALLOWED_TABLE_FUNCTIONS or _qualified(function):
            yield f"table function {name}() is not allowed"
    elif "function_name" in node and node.get("class") in {"FUNCTION", "WINDOW", "AGGREGATE"}:
        name = str(node["function_name"])
        if _qualified(node) or name.lower() not in _builtin_functions():
            yield f"function {name}() is not allowed"
    elif kind not in _KNOWN_TYPES and ("sample" in node or "modifiers" in node):
        # A table reference or query node this check does not know: refuse, do not guess.
        yield f"unsupported construct {kind}"


def _qualified(function: Mapping[str, Any]) -> bool:
    # The parser itself puts list comprehensions etc. in schema "main".
    return bool(function.get("catalog")) or function.get("schema") not in ("", "main", None)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200]


# Table-reference and query-node kinds the walk above understands.
_KNOWN_TYPES = frozenset(
    {
        "SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE",
        "BASE_TABLE", "JOIN", "SUBQUERY", "EMPTY", "EXPRESSION_LIST", "TABLE_FUNCTION",
        "SHOW_REF", "PIVOT",
    }
)  # fmt: skip


# --- the second check: what the bound, optimised plan reads ---------------------------------

# Physical operators that read nothing themselves: they transform what their children produce,
# or produce constants (VALUES, a dummy row), or re-read a CTE of the same plan.
_NON_READING = frozenset(
    {
        "PROJECTION", "FILTER", "HASH_JOIN", "NESTED_LOOP_JOIN", "PIECEWISE_MERGE_JOIN",
        "IE_JOIN", "BLOCKWISE_NL_JOIN", "CROSS_PRODUCT", "POSITIONAL_JOIN", "ASOF_JOIN",
        "LEFT_DELIM_JOIN", "RIGHT_DELIM_JOIN", "DELIM_JOIN", "DELIM_SCAN", "HASH_GROUP_BY",
        "PERFECT_HASH_GROUP_BY", "PARTITIONED_AGGREGATE", "UNGROUPED_AGGREGATE",
        "SIMPLE_AGGREGATE", "WINDOW", "STREAMING_WINDOW", "ORDER_BY", "TOP_N", "LIMIT",
        "STREAMING_LIMIT", "LIMIT_PERCENT", "UNION", "REC_CTE", "RECURSIVE_CTE", "CTE",
        "CTE_SCAN", "REC_CTE_SCAN", "RECURSIVE_CTE_SCAN", "REC_REC_CTE_SCAN", "COLUMN_DATA_SCAN",
        "DUMMY_SCAN", "EMPTY_RESULT", "EXPRESSION_SCAN", "UNNEST", "RESERVOIR_SAMPLE",
        "STREAMING_SAMPLE", "RESULT_COLLECTOR", "CHUNK_SCAN", "POSITIONAL_SCAN", "PIVOT",
        "UNPIVOT", "HASH_DISTINCT", "DISTINCT", "INOUT_FUNCTION",
    }
)  # fmt: skip
# Table functions that only generate values (their operator carries "Function": NAME).
_GENERATORS = frozenset({"RANGE", "GENERATE_SERIES", "UNNEST"})


@dataclass(frozen=True)
class Reads:
    """What a session's plans may read: (operator, table) pairs the role's own views read."""

    scans: frozenset[tuple[str, str]]

    @property
    def tables(self) -> frozenset[str]:
        """The lake tables among them (what DuckLake scans)."""
        return frozenset(what for operator, what in self.scans if operator == "DUCKLAKE_SCAN")


def plan_reads(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[str, str]]:
    """(operator, table or function) of every leaf of ``sql``'s physical plan that reads data.

    The plan is DuckDB's own binding and optimisation of the statement on the session's
    connection: names are resolved exactly as running it would resolve them (CTEs, views,
    replacement scans, the search path), which the syntax tree alone cannot tell.
    """
    try:
        rows = con.execute(f"EXPLAIN (FORMAT json) {sql}").fetchall()
    except duckdb.Error as exc:
        raise QueryRefused(f"does not bind: {_first_line(exc)}") from None
    if not rows:
        raise QueryRefused("no plan to check")
    found: list[tuple[str, str]] = []
    for row in rows:
        for plan in json.loads(row[1]):
            found.extend(_plan_leaves(plan))
    return found


def _plan_leaves(node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    stack = [node]
    while stack:
        current = stack.pop()
        name = str(current.get("name", "")).strip()
        info = current.get("extra_info")
        info = info if isinstance(info, Mapping) else {}
        reads = "Table" in info or ("Function" in info and info["Function"] not in _GENERATORS)
        if reads or name not in _NON_READING | _GENERATORS:
            yield name, str(info.get("Table") or info.get("Function") or "")
        stack.extend(c for c in current.get("children") or () if isinstance(c, Mapping))


def check_plan(con: duckdb.DuckDBPyConnection, sql: str, reads: Reads) -> None:
    """Refuse ``sql`` unless every relation its plan reads is one its views read."""
    for operator, what in plan_reads(con, sql):
        if (operator, what) not in reads.scans:
            raise QueryRefused(f"reads {operator.lower()} {what!r}, which is not your views'")
