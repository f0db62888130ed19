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
  our own pseudonym function cannot be called.

Why a check as well as DuckDB's settings: after ``enable_external_access = false`` and
``lock_configuration = true`` DuckDB 1.5.5 still lets a session ``read_parquet`` and ``glob``
inside the allowed data directory (the lake's own files: every row, unfiltered), read the
catalog through ``sqlite_scan`` (SQLite opens files itself), list paths with
``duckdb_databases()`` and ``ducklake_list_files``, time-travel, ``DETACH`` and ``ATTACH
':memory:'``. Measured in tests/integration/test_access.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb

from pipeline.errors import UsageError

MAX_SQL_CHARS = 20_000
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
    """What a statement may name: the role's view names."""

    views: frozenset[str]


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
    return frozenset(str(name) for (name,) in rows) - DENIED_FUNCTIONS


def parse(sql: str) -> dict[str, Any]:
    """DuckDB's syntax tree of one SELECT statement, or :class:`QueryRefused`."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"statement longer than {MAX_SQL_CHARS} characters")
    con = duckdb.connect(":memory:", config={"autoload_known_extensions": False})
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryRefused(f"does not parse: {_first_line(exc)}") from None
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
    node = parse(sql)
    try:
        for why in _violations(node, frozenset(), allowed):
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
    if node.get("type") == "RECURSIVE_CTE_NODE":
        ctes = ctes | {str(node.get("cte_name", "")).lower()}
    yield from _check_node(node, ctes, allowed)
    for key, value in node.items():
        if key != "cte_map":
            yield from _violations(value, ctes, allowed)


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
