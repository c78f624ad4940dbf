"""DuckDB's own binder types stage 1 before it runs: no cast in it may fail, or be NULL, for some row's value.

A query whose answer is 200 or an error depending on hidden rows is an error oracle. The validators
keep every explicit cast of data a TRY_CAST and every raising function in TRY(), but DuckDB's binder
adds casts of its own: `dest = 5` compares text as a number, and fails on the first row that is not
one. So the statement that will run is bound (never executed) on an empty copy of the product's
tables, and every cast in DuckDB's bound plan is checked:

- a cast of data from text to anything but text is refused (`text_cast`), TRY or not: a text value
  that does not convert picks rows out;
- any other cast of data must be one that cannot fail (a widening: integer to a wider integer,
  DOUBLE or a wide enough DECIMAL; a TIMESTAMP without time zone to DATE; anything to VARCHAR; not DATE to
  TIMESTAMP, whose range is narrower: tests/sandbox/test_lead16_narrowing_casts.py found it), TRY_CAST
  or not (`unsafe_cast`): a TRY_CAST that fails yields NULL, but DuckDB formats the error it then drops,
  7-130 times a success's cost per row, so which hidden values fail a narrowing cast showed in the time
  (red team redx15: `coalesce(CAST((d - 40) * 1e7 AS INTEGER), 0) >= 0`);
- a cast of a constant is computed now: one that fails is refused (`constant_error`) whether or not
  the branch it sits in would ever be reached;
- a cast of data of a DECIMAL type of more than 15 digits and a scale above 0 to DOUBLE or FLOAT is refused
  (`wide_decimal_cast`), TRY or not, explicit or the binder's own (`d > 1e0`, `d + 1.5::DOUBLE`, `sqrt(d)`):
  DuckDB takes about 40 times longer per row for a value whose unscaled integer passes 2^53 (branch dim15,
  docs/sandbox.md "Wide decimal dimensions (dim15)"), so its time said whether hidden rows hold huge values.
  Decided from the type alone; the build stores no measure in such a type (products.storage.fast_measure_type).
  The cast of an aggregate's result (`CAST(SUM(d) AS DOUBLE)`, tpch15's exact sums) runs once per group: allowed.
  Arithmetic and numeric functions on data run in DOUBLE (sandbox.syntax.guard), so they are refused with it;
- on a DECIMAL of more than 18 digits (a 128-bit integer) and a scale above 0, a cast of data to text, to an
  integer or to a DECIMAL of fewer decimals (`wide_decimal_operation`): they divide or format the 128-bit integer,
  1.3-1.7x slower per row once it passes 2^63 (bench/dim15_timing.py).

The empty copy lives in its own data-less connection (`json_serialize_plan` cannot serialise a
Parquet scan), built once per product version from the locked connection's own column types.
"""

from __future__ import annotations

from typing import Any

import duckdb
import msgspec

from market.i18n import Msg

Refusal = tuple[str, dict[str, str]]
"""An error code and its message parameters, as QueryRefused takes them."""

_SIGNED = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_UNSIGNED = ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19, "HUGEINT": 39}
_DIGITS |= {"UTINYINT": 3, "USMALLINT": 5, "UINTEGER": 10, "UBIGINT": 20, "UHUGEINT": 39, "BOOLEAN": 1}
_TEXT = frozenset({"VARCHAR"})
_NAIVE_TIMESTAMPS = frozenset({"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"})
_TIMESTAMPS = _NAIVE_TIMESTAMPS | {"TIMESTAMP WITH TIME ZONE"}

_decode = msgspec.json.Decoder().decode


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shadow(connection: duckdb.DuckDBPyConnection, tables: list[str]) -> duckdb.DuckDBPyConnection:
    """A data-less connection with an empty table of the same columns and types for each of `tables`."""
    copy = duckdb.connect(":memory:", config={"enable_external_access": False, "threads": 1})
    for table in tables:
        described = connection.execute(f"DESCRIBE {_quote(table)}").fetchall()
        columns = ", ".join(f"{_quote(str(row[0]))} {row[1]}" for row in described)
        copy.execute(f"CREATE TABLE {_quote(table)} ({columns})")
    copy.execute("SET lock_configuration = true")
    return copy


def _type(node: dict[str, Any]) -> dict[str, Any]:
    """DuckDB's type of a bound expression (a constant carries it on its value)."""
    kind = node.get("return_type") or (node.get("value") or {}).get("type") or {}
    return kind if isinstance(kind, dict) else {}


def _type_id(node: dict[str, Any]) -> str:
    return str(_type(node).get("id", ""))


def _decimal(node: dict[str, Any]) -> tuple[int, int]:
    info = _type(node).get("type_info") or {}
    return int(info.get("width", 38)), int(info.get("scale", 0))


def _widening(child: dict[str, Any], cast: dict[str, Any]) -> bool:
    """Whether every value of the child's type converts to the cast's type without failing."""
    source, target = _type_id(child), _type_id(cast)
    if target in _TEXT:
        return True
    if source == target and source != "DECIMAL":
        return True
    if source in _DIGITS:
        if target in ("FLOAT", "DOUBLE"):
            return True
        if target == "DECIMAL":
            width, scale = _decimal(cast)
            return width - scale >= _DIGITS[source]
        if source in _UNSIGNED and target in _SIGNED:
            return _SIGNED.index(target) > _UNSIGNED.index(source)
        if (source in _SIGNED or source == "BOOLEAN") and target in _SIGNED:
            return source == "BOOLEAN" or _SIGNED.index(target) >= _SIGNED.index(source)
        return source in _UNSIGNED and target in _UNSIGNED and _UNSIGNED.index(target) >= _UNSIGNED.index(source)
    if source == "FLOAT" and target == "DOUBLE":
        return True
    if source == "DECIMAL":
        if target == "DOUBLE":
            return True
        if target == "DECIMAL":
            (width, scale), (to_width, to_scale) = _decimal(child), _decimal(cast)
            return to_scale >= scale and to_width - to_scale >= width - scale
    # Not DATE to TIMESTAMP: DATE's range (to 5881580 AD) is wider than TIMESTAMP's (to 294247 AD).
    return source in _NAIVE_TIMESTAMPS and target == "DATE"


_FLOATS = frozenset({"FLOAT", "DOUBLE"})
FAST_DECIMAL_DIGITS = 15
"""A DECIMAL of at most this many digits has unscaled integers under 10^15 < 2^53: its cast to DOUBLE costs the
same for every value. A wider one with a scale above 0 does not (scale 0 converts an integer: the same for all)."""


def slow_to_double(width: int, scale: int) -> bool:
    """Whether DuckDB's cast of DECIMAL(width, scale) to DOUBLE or FLOAT can cost more for some values (dim15)."""
    return width > FAST_DECIMAL_DIGITS and scale > 0


def _wide_decimal_cast(child: dict[str, Any], cast: dict[str, Any]) -> Refusal | None:
    if _type_id(child) != "DECIMAL" or _type_id(cast) not in _FLOATS or not slow_to_double(*_decimal(child)):
        return None
    width, scale = _decimal(child)
    name = str(child.get("alias") or "") if child.get("expression_class") in ("BOUND_REF", "BOUND_COLUMN_REF") else ""
    return (
        "wide_decimal_cast",
        {"column": name or "an expression", "source": f"DECIMAL({width}, {scale})", "target": _type_id(cast)},
    )


def _wide_decimal_operation(child: dict[str, Any], cast: dict[str, Any]) -> Refusal | None:
    if _type_id(child) != "DECIMAL":
        return None
    width, scale = _decimal(child)
    if width <= 18 or scale == 0:
        return None
    target = _type_id(cast)
    if target == "DECIMAL":
        if _decimal(cast)[1] >= scale:
            return None  # more decimals: a multiplication, the same for every value
        target = "DECIMAL({}, {})".format(*_decimal(cast))
    elif target not in _TEXT and target not in _DIGITS:
        return None
    name = str(child.get("alias") or "") if child.get("expression_class") in ("BOUND_REF", "BOUND_COLUMN_REF") else ""
    return (
        "wide_decimal_operation",
        {"column": name or "an expression", "source": f"DECIMAL({width}, {scale})", "target": target},
    )


def _aggregate_results(tree: dict[str, Any]) -> set[int]:
    """The ids of the plan's references to an aggregate's result (`SUM(m)` read by the projection, the HAVING
    filter or the ordering right above the aggregate): one value per group, not per row.

    DuckDB's bound plan reads a child operator's output by position (BOUND_REF `index`): an aggregate's outputs
    are its groups, then its aggregates. Only the operator directly above an aggregate is looked at."""
    found: set[int] = set()
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(item.values())
        children = item.get("children")
        if not (
            str(item.get("type", "")).startswith("LOGICAL_")
            and isinstance(children, list)
            and len(children) == 1
            and isinstance(children[0], dict)
            and children[0].get("type") == "LOGICAL_AGGREGATE_AND_GROUP_BY"
        ):
            continue
        groups = len(children[0].get("groups") or [])
        own: list[Any] = [value for key, value in item.items() if key != "children"]
        while own:
            node = own.pop()
            if isinstance(node, list):
                own.extend(node)
            elif isinstance(node, dict):
                if node.get("expression_class") == "BOUND_REF" and int(node.get("index", -1)) >= groups:
                    found.add(id(node))
                own.extend(node.values())
    return found


def _constant(node: dict[str, Any]) -> bool:
    """No data anywhere below `node`."""
    if node.get("expression_class") in ("BOUND_REF", "BOUND_COLUMN_REF", "BOUND_AGGREGATE"):
        return False
    return all(_constant(child) for child in _expressions(node))


def _expressions(node: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for key, value in node.items():
        if key == "return_type":
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if "expression_class" in item:
                    found.append(item)
                else:
                    stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return found


def _type_sql(node: dict[str, Any]) -> str | None:
    kind = _type_id(node)
    if kind == "DECIMAL":
        width, scale = _decimal(node)
        return f"DECIMAL({width}, {scale})"
    if kind in _DIGITS or kind in ("FLOAT", "DOUBLE", "VARCHAR", "DATE", "TIME", "INTERVAL") or kind in _TIMESTAMPS:
        return kind
    return None


def _constant_cast(copy: duckdb.DuckDBPyConnection, cast: dict[str, Any], child: dict[str, Any]) -> Refusal | None:
    """Compute a cast of a constant now; a failure is refused, reached or not."""
    if _widening(child, cast):
        return None
    value = child.get("value") or {}
    source, target = _type_sql(child), _type_sql(cast)
    if target == "INTERVAL" and source not in ("INTERVAL", "VARCHAR"):
        # DuckDB has no such cast and says so when a row reaches it, not at binding (`i = DATE '2024-01-01'` on an
        # INTERVAL column i): the error answered whether any row passed the filters before it (fn17).
        return ("unsafe_cast", {"source": _type_id(child), "target": "INTERVAL"})
    if child.get("expression_class") != "BOUND_CONSTANT" or value.get("is_null"):
        return None  # computed constants are checked whole (Plan.constants_sql); NULL casts to anything
    if source is None or target is None or not isinstance(value.get("value"), str | int | float | bool):
        return ("unsafe_cast", {"source": _type_id(child), "target": _type_id(cast)})
    try:
        copy.execute(f"SELECT CAST(CAST(? AS {source}) AS {target})", [value["value"]]).fetchall()
    except duckdb.Error as error:
        return ("constant_error", {"detail": str(error).splitlines()[0][:200]})
    return None


_CALENDAR_ONLY = frozenset({"dayofweek", "isodow", "dayofyear", "week", "weekofyear", "yearweek", "era", "julian"})
"""Date functions that DuckDB binds on an INTERVAL but fails on for each row (`interval units "dow" not recognized`)."""

_LOOSE_KEYS = frozenset({"FLOAT", "DOUBLE", "INTERVAL", "TIME WITH TIME ZONE"})
"""Types whose equal values can differ (-0.0 = 0.0; `1 day` = `24 hours`, `1 month` = `30 days`; one instant at
two offsets): a group of such keys holds the value of the row the aggregate met first (red team red16s)."""
_READS_EQUALITY = frozenset(
    {
        "COMPARE_EQUAL", "COMPARE_NOTEQUAL", "COMPARE_LESSTHAN", "COMPARE_GREATERTHAN", "COMPARE_LESSTHANOREQUALTO",
        "COMPARE_GREATERTHANOREQUALTO", "COMPARE_DISTINCT_FROM", "COMPARE_NOT_DISTINCT_FROM", "COMPARE_IN",
        "COMPARE_NOT_IN", "COMPARE_BETWEEN", "COMPARE_NOT_BETWEEN", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL",
    }
)  # fmt: skip
"""Parents that read a value only through equality and order, which every member of its group shares."""


def _reads_only_equality(parent: dict[str, Any] | None) -> bool:
    if parent is None:
        return True  # the key itself: shown (JSON writes equal values alike: service._jsonable), ordered, grouped
    if parent.get("type") in _READS_EQUALITY:
        return True
    # DuckDB compares and groups intervals through their normalised form, and hashes equal values alike.
    path = (parent.get("qname") or {}).get("path") or []
    return bool(path) and path[-1] in ("normalized_interval", "hash")


def _computed_key(tree: dict[str, Any]) -> Refusal | None:
    """A group key of a type whose equal values can differ, computed on after aggregation: refused.

    Stage 2 reads each group's key column (`__g<i>`); for such a type its value is the first row's of the group
    (DuckDB keeps the first value of equal keys), so `extract(day FROM k)`, `CAST(k AS VARCHAR)`, `k || ''` or
    `1 / k > 0` said which spelling the group's first row had: a fact about one row, chosen by the buyer
    (`CASE WHEN <property> THEN INTERVAL 1 DAY ELSE INTERVAL 24 HOUR END`). Shown, compared or ordered, the key
    reads only what equality reads, the same for every row of the group."""
    stack: list[tuple[dict[str, Any], dict[str, Any] | None]] = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        if node.get("expression_class") is None:
            stack.extend((child, parent) for child in _expressions(node))
            continue
        if (
            node.get("expression_class") in ("BOUND_REF", "BOUND_COLUMN_REF")
            and str(node.get("alias", "")).startswith("__g")
            and _type_id(node) in _LOOSE_KEYS
            and not _reads_only_equality(parent)
        ):
            return (
                "disallowed_construct",
                {
                    "construct": Msg(
                        "Computing on a group key of a floating-point, interval or time-with-time-zone type after "
                        "aggregation (equal values of these types can be written differently, and the group would "
                        "show its first row's)"
                    ),
                    "instead": Msg(
                        "group by the computed expression itself, or show, compare or order the key as it is."
                    ),
                },
            )
        stack.extend((child, node) for child in _expressions(node))
    return None


def check(copy: duckdb.DuckDBPyConnection, statement: str, *, group_keys: bool = True) -> Refusal | None:
    """Bind `statement` on the empty copy and check every cast in DuckDB's plan; the first refusal, if any.

    `group_keys`: also refuse a group key computed on after aggregation (_computed_key), for the threshold
    path's stage 1 and stage 2 (DP mode groups by bare dimensions and shows them as they are)."""
    row = copy.execute("SELECT json_serialize_plan(?)", [statement]).fetchone()
    try:
        tree = _decode(row[0]) if row and row[0] else {}
    except msgspec.DecodeError:
        # DuckDB writes an infinite constant (1e309) as a bare `inf`: refused, from the text alone.
        # Before, the decode error killed the worker, answered as resource_limit after a respawn.
        return ("not_typeable", {"detail": "a constant that is not a finite number"})
    if not isinstance(tree, dict):
        return ("not_typeable", {"detail": "no plan"})
    if tree.get("error"):
        if tree.get("error_type") in ("binder", "catalog", "parser"):
            return None  # not bindable: execution reports the binder's own message, which names no value
        return ("not_typeable", {"detail": str(tree.get("error_message", ""))[:200]})
    computed = _computed_key(tree) if group_keys else None
    if computed is not None:
        return computed
    per_group = _aggregate_results(tree)
    stack: list[dict[str, Any]] = _expressions(tree)
    while stack:
        node = stack.pop()
        stack.extend(_expressions(node))
        function = ((node.get("qname") or {}).get("path") or [""])[-1]
        if (
            node.get("expression_class") == "BOUND_FUNCTION"
            and function in _CALENDAR_ONLY
            and any(_type_id(child) == "INTERVAL" for child in node.get("children") or [])
        ):
            # dayofweek() of an INTERVAL fails when a row reaches it, not at binding: an error oracle (fn17).
            return (
                "disallowed_construct",
                {"construct": f"{function}() of an INTERVAL", "instead": Msg("use year(), month() or day() on it.")},
            )
        if node.get("type") != "OPERATOR_CAST" and node.get("expression_class") != "BOUND_CAST":
            continue
        children = node.get("children") or ([node["child"]] if "child" in node else [])
        if len(children) != 1:
            continue
        child = children[0]
        if _constant(child):
            refusal = _constant_cast(copy, node, child)
        elif id(child) not in per_group and (
            (wide := _wide_decimal_cast(child, node) or _wide_decimal_operation(child, node)) is not None
        ):
            # An aggregate's result is cast once per group, not per row, and aggregates read measures only
            # (the validator): tpch15's exact `CAST(SUM(d) AS DOUBLE)` of a DECIMAL(38, s) sum stays allowed.
            refusal = wide
        elif _type_id(child) in _TEXT and _type_id(node) not in _TEXT:
            refusal = ("text_cast", {"target": _type_id(node)})
        elif not _widening(child, node):
            # TRY_CAST or not: a TRY_CAST that fails costs DuckDB 7-130 times a success per row (it formats the
            # error it then drops), so which hidden values fail would show in the time (redx15).
            refusal = ("unsafe_cast", {"source": _type_id(child), "target": _type_id(node)})
        else:
            refusal = None
        if refusal is not None:
            return refusal
    return None
