"""Every function the sandbox allows on row level, on every column type a product holds: accepted means it cannot raise
on any value a version may store (issue 9; fn17, after lead17's date_trunc() units).

A row-level expression that fails for some stored values and not others is an error oracle, and inside TRY() a timing
oracle (TRY()'s row-by-row slow path: docs/sandbox.md, red16, date17). test_row_level_property draws expressions over a
whole-number and a text column only; lead17 found date_trunc('timezone', <TIMESTAMP WITH TIME ZONE>) outside that
grammar. The class here is finite: each allowed function (sandbox.rules) with constant arguments where it takes them
(ordinary, zero, negative, huge, empty), on each column type, in WHERE and as a GROUP BY key.

Acceptance is decided in process as a worker decides it (both validators and the rewrite: plan_query; the computed
constants; the binder check on an empty copy of the table), and a sample is sent over HTTP to confirm the service
agrees (200 or 422, never 5xx). Each accepted expression, as the sandbox rewrote it, must run in raw DuckDB on the
type's extreme values (min and max, +-inf and NaN, DATE_RANGE's ends, '' and a long string, NULL) in three time zones
without an error, and must hold no TRY() whose inner call fails on one of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from products.storage import DATE_RANGE
from sandbox import binding
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.conftest import Market
from tests.factories import query
from tests.support.typed_product import policy, product_fixture, refusal, schema, typed_rows

low, high = DATE_RANGE
LONG = "'" + "x" * 5000 + "'"
COLUMNS: dict[str, tuple[str, list[str]]] = {
    # column: (its type in the product, SQL literals of the extreme values it may hold; NULL is added to each)
    "c_tinyint": ("TINYINT", ["-128", "127", "0"]),
    "c_smallint": ("SMALLINT", ["-32768", "32767", "0"]),
    "c_integer": ("INTEGER", ["-2147483648", "2147483647", "0"]),
    "c_bigint": ("BIGINT", ["-9223372036854775808", "9223372036854775807", "0"]),
    "c_utinyint": ("UTINYINT", ["0", "255"]),
    "c_usmallint": ("USMALLINT", ["0", "65535"]),
    "c_uinteger": ("UINTEGER", ["0", "4294967295"]),
    "c_ubigint": ("UBIGINT", ["0", "18446744073709551615"]),
    "c_hugeint": ("DECIMAL(38,0)", ["-" + "9" * 38, "9" * 38]),  # a HUGEINT column is stored so
    "c_float": ("FLOAT", ["-3.4028235e38", "3.4028235e38", "'inf'", "'-inf'", "'nan'", "0", "-1"]),
    "c_double": ("DOUBLE", ["-1.7976931348623157e308", "1.7976931348623157e308", "'inf'", "'-inf'", "'nan'", "0"]),
    "c_dec9": ("DECIMAL(9,2)", ["-9999999.99", "9999999.99", "0"]),
    "c_dec18": ("DECIMAL(18,2)", ["-9999999999999999.99", "9999999999999999.99", "0"]),
    "c_boolean": ("BOOLEAN", ["true", "false"]),
    "c_date": ("DATE", [f"'{low}'", f"'{high}'", "'2024-06-15'"]),
    "c_timestamp": ("TIMESTAMP", [f"'{low} 00:00:00'", f"'{high} 23:59:59.999999'", "'2024-06-15 10:11:12'"]),
    "c_timestamptz": (
        "TIMESTAMP WITH TIME ZONE",
        [f"'{low} 00:00:00+00'", f"'{high} 00:00:00+00'", "'2024-06-15 10:11:12+00'"],
    ),
    "c_interval": (
        "INTERVAL",
        ["INTERVAL 0 DAY", "INTERVAL '2147483647 months 2147483647 days 2147483647 milliseconds'", "INTERVAL 90 DAY"],
    ),
    "c_varchar": ("VARCHAR", ["''", "'north'", LONG, "'-1'", "'2024-06-15'"]),
}
ZONES = ("America/Los_Angeles", "UTC", "Asia/Shanghai")

# Constant arguments, by the kind of slot they fill.
NUMBERS = ["2", "0", "-1", "9223372036854775807", "1e308", "2.5"]
TEXTS = ["'x'", "''", "'month'", LONG]
UNITS = [
    "'year'", "'quarter'", "'month'", "'week'", "'day'", "'hour'", "'minute'", "'second'", "'millisecond'",
    "'microsecond'", "'decade'", "'century'", "'millennium'", "'isoyear'", "'epoch'", "'dow'", "'isodow'", "'doy'",
    "'yearweek'", "'era'", "'julian'", "'timezone'", "'timezone_hour'", "'nanosecond'", "'epoch_ms'", "'epoch_us'",
    "'epoch_ns'", "'cents'",
]  # fmt: skip
# `any` slots (+, -, comparisons, greatest...): the binder's casts between the column's type and each constant's; the
# numbers' own edge cases (0, 1e308) are in NUMBERS' slots (*, /, //, %, pow, log).
ANY = ["2", "9223372036854775807", "''", "'x'", "DATE '2024-01-01'", "TIMESTAMP '2024-01-01 00:00:00'",
       "INTERVAL 1 DAY", "true"]  # fmt: skip
SLOTS = {"n": NUMBERS, "s": TEXTS, "u": UNITS, "a": ANY}

FUNCTIONS: list[str] = [
    # {c} is the column; {n}, {s}, {u}, {a}: a constant of each kind (a second one of the kind: {n2}, {s2})
    "abs({c})", "-{c}", "floor({c})", "ceil({c})", "ceiling({c})", "sqrt({c})", "ln({c})", "log10({c})", "log2({c})",
    "trunc({c})", "round({c})", "round({c}, {n})", "log({c})", "log({n}, {c})", "log({c}, {n})", "pow({c}, {n})",
    "pow({n}, {c})", "power({c}, {n})",
    "{c} + {a}", "{a} + {c}", "{c} - {a}", "{a} - {c}", "{c} * {n}", "{c} / {n}", "{n} / {c}", "{c} // {n}",
    "{n} // {c}", "{c} % {n}", "{n} % {c}", "{c} = {a}", "{c} < {a}",
    "lower({c})", "upper({c})", "lcase({c})", "ucase({c})", "length({c})", "trim({c})", "ltrim({c})", "rtrim({c})",
    "trim({c}, {s})", "substring({c}, {n})", "substring({c}, {n}, {n2})", "substr({c}, {n}, {n2})", "left({c}, {n})",
    "right({c}, {n})", "replace({c}, {s}, {s2})", "concat({c}, {s})", "{c} || {s}", "{c} LIKE {s}",
    "{c} NOT LIKE {s}", "{c} ILIKE {s}", "{c} NOT ILIKE {s}",
    "date_trunc({u}, {c})", "datetrunc({u}, {c})", "date_part({u}, {c})", "datepart({u}, {c})",
    "extract({x} FROM {c})", "year({c})", "month({c})", "day({c})", "quarter({c})", "dayofweek({c})",
    "to_days({c})", "to_months({c})", "to_years({c})", "to_hours({c})", "to_minutes({c})", "to_seconds({c})",
    "greatest({c}, {a})", "least({c}, {a})", "nullif({c}, {a})", "coalesce({c}, {a})",
    "if({c} IS NULL, {a}, {c})", "CASE WHEN {c} IS NULL THEN {a} ELSE {c} END",
]  # fmt: skip

POLICY = policy("typed", COLUMNS)
typed = product_fixture("typed", typed_rows(COLUMNS), POLICY)


def _fill(template: str, column: str) -> Iterator[str]:
    """The template with the column and each constant in turn (the other slots at their first, ordinary value)."""
    base = {"c": column, "n": "2", "n2": "3", "s": "'x'", "s2": "'y'", "u": "'month'", "a": "2", "x": "month"}
    slots = [slot for slot in ("n", "n2", "s", "s2", "u", "a", "x") if "{" + slot + "}" in template]
    if not slots:
        yield template.format(**base)
    for slot in slots:
        values = SLOTS.get(slot.rstrip("2"), [u.strip("'") for u in UNITS])
        if slot in ("u", "x") and not column.startswith(("c_date", "c_time", "c_interval")):
            values = values[:3]  # a unit on a number or text binds to nothing, whatever the unit
        for value in values:
            yield template.format(**{**base, slot: value})


def _expressions() -> list[tuple[str, str]]:
    return [(column, e) for column in COLUMNS for template in FUNCTIONS for e in dict.fromkeys(_fill(template, column))]


@pytest.fixture(scope="module")
def connections() -> Iterator[tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]]:
    """An empty copy of the table (the binder check's) and one holding each column's extreme values, a row each."""
    with duckdb.connect() as empty, duckdb.connect() as extremes:
        empty.execute(f'CREATE TABLE "typed" ({schema(COLUMNS)})')
        extremes.execute(f'CREATE TABLE "typed" ({schema(COLUMNS)})')
        for name, (kind, values) in COLUMNS.items():
            for value in [*values, "NULL"]:
                extremes.execute(f'INSERT INTO "typed" ("{name}") VALUES (CAST({value} AS {kind}))')
        yield empty, extremes


def _accepted(empty: duckdb.DuckDBPyConnection, sql: str) -> str | None:
    """Stage 1's statement as the sandbox runs it (its threshold column and restriction aside), or None if the
    sandbox (or a worker) refuses `sql`."""
    try:
        plan = plan_query(sql, ProtectionPolicy.model_validate(POLICY))
    except QueryRefused:
        return None
    if plan.constants_sql:
        try:
            empty.execute(plan.constants_sql).fetchall()
        except duckdb.Error:
            return None
    statement = plan.template.replace(', "__threshold__"', "").replace('"__restrict__"', "TRUE")
    if binding.check(empty, statement) is not None:
        return None
    return statement


def _binds(empty: duckdb.DuckDBPyConnection, statement: str) -> bool:
    """Whether `statement` runs over no row: if not, execution refuses it whatever the rows."""
    try:
        empty.execute(statement).fetchall()
    except duckdb.Error:
        return False
    return True


_TRY = re.compile(r"\bTRY\(", re.IGNORECASE)


def _try_calls(sql: str) -> list[str]:
    """The inner expressions of each TRY(...) in `sql`."""
    inner = []
    for match in _TRY.finditer(sql):
        depth, start = 1, match.end()
        for index in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[index], 0)
            if depth == 0:
                inner.append(sql[start:index])
                break
    return inner


def _failure(extremes: duckdb.DuckDBPyConnection, statement: str, column: str) -> str | None:
    """The statement, or a TRY()'s inner call in it, if it raises on some extreme value in some zone; else None."""
    probes = [
        f"SELECT length(string_agg(CAST(t AS VARCHAR), '')) FROM ({statement}) AS t",  # every value computed
        *(f'SELECT count(*) FROM "typed" WHERE ({e}) IS NOT NULL' for e in _try_calls(statement)),
    ]
    for zone in ZONES if column.startswith(("c_date", "c_time")) else ZONES[:1]:  # the zone matters to dates only
        extremes.execute(f"SET TimeZone = '{zone}'")
        for probe in probes:
            try:
                extremes.execute(probe).fetchall()
            except duckdb.Error as error:
                return f"{probe} in {zone}: {error}"
    return None


def test_every_accepted_row_level_function_runs_on_every_stored_value(connections: Any) -> None:
    empty, extremes = connections
    failures: list[str] = []
    accepted = 0
    for column, expression in _expressions():
        for sql in (
            f"SELECT region, count(*) AS n FROM typed WHERE ({expression}) IS NOT NULL GROUP BY region",
            f"SELECT {expression} AS k, count(*) AS n FROM typed GROUP BY {expression}",
        ):
            statement = _accepted(empty, sql)
            if statement is None:
                continue
            accepted += 1
            found = _failure(extremes, statement, column)
            if found is not None and _binds(empty, statement):
                failures.append(f"{column}: {sql}\n    {found}")
    assert accepted > 1000, accepted  # the rule refuses what can fail, not everything
    assert not failures, f"{len(failures)} accepted expressions can fail:\n" + "\n".join(failures[:60])


def test_the_service_agrees_on_a_sample(typed: tuple[Market, Any], connections: Any) -> None:
    # Every 11th (column, function) pair, its ordinary constants, over HTTP (the stride is prime to the number of
    # functions, so each column meets a different eleventh of them; the whole grid is checked in process above, and
    # this test runs on both databases in CI): 200 exactly when the in-process decision accepts, else 422, never 5xx.
    market, buyer = typed
    empty, _ = connections
    pairs = [(column, next(_fill(template, column))) for column in COLUMNS for template in FUNCTIONS]
    stride = next(s for s in (11, 13, 17) if math.gcd(s, len(FUNCTIONS)) == 1)
    for _column, expression in pairs[::stride]:
        sql = f"SELECT region, count(*) AS n FROM typed WHERE ({expression}) IS NOT NULL GROUP BY region"
        response = query(market, buyer, "typed", sql)
        assert response.status_code in (200, 422), (sql, response.text)
        statement = _accepted(empty, sql)
        assert (response.status_code == 200) == (statement is not None and _binds(empty, statement)), (
            sql,
            response.text,
        )


@pytest.mark.parametrize(
    ("expression", "code", "part"),
    [
        # extract() of a DATE's time zone fails for each row (not at binding): an error oracle on whether any row
        # passed the filters before it.
        ("extract(timezone FROM c_date)", "disallowed_construct", "dow"),
        ("extract(timezone_hour FROM c_date)", "disallowed_construct", "dow"),
        # DuckDB binds these on an INTERVAL column and fails when a row reaches them.
        ("c_interval = DATE '2024-01-01'", "unsafe_cast", "INTERVAL"),
        ("nullif(c_interval, TIMESTAMP '2024-01-01 00:00:00')", "unsafe_cast", "INTERVAL"),
        ("dayofweek(c_interval)", "disallowed_construct", "month()"),
    ],
)
def test_what_failed_per_row_is_refused_with_what_to_write_in_en_and_zh(
    typed: tuple[Market, Any], expression: str, code: str, part: str
) -> None:
    market, buyer = typed
    sql = f"SELECT region, count(*) AS n FROM typed WHERE ({expression}) IS NOT NULL GROUP BY region"
    messages = {}
    for language in ("en", "zh-CN"):
        error = refusal(market, buyer, "typed", sql, language)
        assert error["code"] == code, error
        assert part in error["message"], error
        messages[language] = error["message"]
    assert messages["en"] != messages["zh-CN"]
