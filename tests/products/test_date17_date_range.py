"""No product version holds a date or time a calendar function of the sandbox fails on (issue 9, branch date17).

The sandbox keeps date_trunc() in TRY() (sandbox.syntax.guard). date_trunc of a DATE returns a TIMESTAMP and fails
for a date whose truncation falls outside TIMESTAMP's range (after 294247 AD, before 290309 BC); TRY() then
recomputes the vector row by row, 42 against 17,617 ns a row (docs/sandbox.md, red16), so a product whose own data
held such dates told, through time, whether hidden rows hold them. Buyers cannot make such dates (date arithmetic
on data is refused), so the build refuses them: products.storage.check_dates, against storage.DATE_RANGE.

The HTTP tests build products through the operator's API; the property draws values over the whole range of
DATE, TIMESTAMP and TIMESTAMP WITH TIME ZONE (their ends and +-infinity included) and checks, in raw DuckDB, every
calendar function the sandbox allows on each value the build accepts, in three time zones. +-infinity are refused:
nothing fails on them, but they cost less than a finite date (bench/date17_trunc.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.accounts.models import Role
from market.errors import Unprocessable
from products import storage
from tests.conftest import Market
from tests.factories import create_product, csv_bytes, grant, listed_product, query, upload_version
from tests.support.typed_product import policy, rows_over

POLICY = policy("events", ["day"], hidden=["recorded"], min_group_size=10)


def _rows(day: str, recorded: str = "DATE '2024-01-01'") -> str:
    """The product's rows, `day` and `recorded` SQL over the row number i."""
    return rows_over({"day": day, "recorded": recorded})


def _parquet(tmp_path: Path, select: str) -> bytes:
    path = tmp_path / "events.parquet"
    with duckdb.connect() as connection:
        connection.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("column", "select", "count"),
    [
        # red16's case: three rows beyond the TIMESTAMP range, where date_trunc('month', d) fails
        (
            "day",
            _rows(
                "CASE WHEN i IN (7, 8, 9) THEN DATE '300000-01-01' "
                "ELSE DATE '2024-01-01' + CAST(i % 300 AS INTEGER) END"
            ),
            3,
        ),
        # DATE's own ends, in a hidden column the buyer never names
        (
            "recorded",
            _rows(
                "DATE '2024-01-01' + CAST(i % 300 AS INTEGER)",
                "CASE i WHEN 1 THEN DATE '5881580-07-10' WHEN 2 THEN DATE '5877642-06-25 (BC)' "
                "ELSE DATE '2024-01-01' END",
            ),
            2,
        ),
        # the first date past TIMESTAMP's end that date_trunc('day') fails on, and the last one before its start
        # that date_trunc('year') fails on
        (
            "day",
            _rows(
                "CASE i WHEN 5 THEN DATE '294247-01-11' WHEN 6 THEN DATE '290309-12-31 (BC)' "
                "ELSE DATE '2024-01-01' + CAST(i % 300 AS INTEGER) END"
            ),
            2,
        ),
        # TIMESTAMP's first days (290309 (BC)), whose month starts before TIMESTAMP's range: date_trunc('month') fails
        (
            "recorded",
            _rows(
                "DATE '2024-01-01' + CAST(i % 300 AS INTEGER)",
                "CASE WHEN i = 4 THEN TIMESTAMP '290309-12-25 (BC) 10:00:00' ELSE TIMESTAMP '2024-01-01 10:00:00' END",
            ),
            1,
        ),
        # +-infinity: nothing fails on them, but they cost less than a finite date (bench/date17_trunc.py)
        (
            "day",
            _rows(
                "CASE i WHEN 5 THEN DATE 'infinity' WHEN 6 THEN DATE '-infinity' "
                "ELSE DATE '2024-01-01' + CAST(i % 300 AS INTEGER) END"
            ),
            2,
        ),
    ],
)
def test_a_build_holding_a_date_date_trunc_fails_on_is_refused_with_the_column_count_and_range(
    market: Market, tmp_path: Path, column: str, select: str, count: int
) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "far-dates").status_code == 201
    response = upload_version(
        market, operator, "far-dates", policy=POLICY, tables={"events.parquet": _parquet(tmp_path, select)}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "date_out_of_range", error
    low, high = storage.DATE_RANGE
    for language, words in (("en", f"Column '{column}'"), ("zh-CN", f"的列“{column}”")):
        again = market.client.post(
            "/v1/products/far-dates/versions",
            headers={**operator.headers, "Accept-Language": language},
            files=[("files", ("events.parquet", _parquet(tmp_path, select), "application/octet-stream"))],
            data={"policy": json.dumps(POLICY)},
        )
        message = again.json()["error"]["message"]
        assert again.status_code == 422 and words in message and str(count) in message, message
        assert low in message and high in message, message
    versions = market.client.get("/v1/products/far-dates/versions", headers=operator.headers).json()["items"]
    assert versions == []


def test_the_accepted_range_s_ends_build_and_date_trunc_answers(market: Market, tmp_path: Path) -> None:
    """A version holding DATE_RANGE's ends builds, and a buyer's date_trunc over it answers."""
    low, high = storage.DATE_RANGE
    day = (
        f"CASE i % 5 WHEN 0 THEN DATE '{low}' WHEN 1 THEN DATE '{high}' WHEN 2 THEN DATE '1900-01-01' "
        "WHEN 3 THEN DATE '9999-12-31' ELSE DATE '2024-01-01' END"
    )
    listed = listed_product(
        market, "end-dates", tables={"events.parquet": _parquet(tmp_path, _rows(day))}, policy=POLICY
    )
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    response = query(
        market,
        buyer,
        "end-dates",
        "SELECT date_trunc('month', day) AS m, year(day) AS y, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 3",
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["rows"]) == 5, response.json()


# -- the property: every value the build accepts is safe for every calendar function the sandbox allows -------------

_DAYS = 2_147_483_646
"""DATE's finite values are DATE '1970-01-01' + n for |n| <= this (5877642-06-25 (BC) to 5881580-07-10)."""
_MICROS = (-9_223_372_022_400_000_000, 9_223_372_036_854_775_806)
"""TIMESTAMP's finite values as microseconds since 1970 (290309-12-22 (BC) to 294247-01-10 04:00:54.775806)."""

_UNITS = (
    "millennium", "century", "decade", "year", "quarter", "month", "week", "day", "hour", "minute", "second",
    "milliseconds", "microseconds", "isoyear", "yearweek", "dow", "isodow", "doy", "epoch", "julian",
)  # fmt: skip


def _calendar_functions(kind: str) -> list[str]:
    """Every calendar function of a date or timestamp column the sandbox lets a buyer write (sandbox.rules:
    date_trunc, date_part, extract, year, month, day, quarter, dayofweek, a cast to DATE or VARCHAR, `||`), with each
    unit DuckDB computes for an ordinary value (units it refuses for every value, e.g. 'timezone' of a DATE, tell
    nothing)."""
    candidates = [f"date_trunc('{u}', x)" for u in _UNITS] + [f"date_part('{u}', x)" for u in _UNITS]
    candidates += [f"extract({u} FROM x)" for u in ("year", "month", "day", "quarter", "week", "epoch", "dow")]
    candidates += ["year(x)", "month(x)", "day(x)", "quarter(x)", "dayofweek(x)", "CAST(x AS VARCHAR)", "x || ''"]
    candidates += ["CAST(x AS DATE)"]
    working = []
    with duckdb.connect() as connection:
        for function in candidates:
            try:
                connection.execute(f"SELECT {function} FROM (SELECT CAST(DATE '2024-06-15' AS {kind}) AS x)").fetchall()
            except duckdb.Error:
                continue
            working.append(function)
    return working


KINDS = ("DATE", "TIMESTAMP", "TIMESTAMPTZ")
FUNCTIONS = {kind: _calendar_functions(kind) for kind in KINDS}
_LOW, _HIGH = storage.DATE_RANGE
_EDGES = [
    f"DATE '{_LOW}'",
    f"DATE '{_HIGH}'",
    f"DATE '{_LOW}' - 1",
    f"DATE '{_HIGH}' + 1",
    "DATE '294247-01-10'",
    "DATE '294247-01-11'",
    "DATE '290308-01-01 (BC)'",
    "DATE '290309-12-31 (BC)'",
    "DATE 'infinity'",
    "DATE '-infinity'",
    "DATE '5881580-07-10'",
    "DATE '5877642-06-25 (BC)'",
    f"TIMESTAMP '{_HIGH} 23:59:59.999999'",
    f"TIMESTAMP '{_LOW} 00:00:00' - INTERVAL 1 MICROSECOND",
    "TIMESTAMP '294247-01-10 04:00:54.775806'",
    "TIMESTAMP '290309-12-22 (BC) 00:00:00'",
    "TIMESTAMP '290308-01-01 (BC) 00:00:00'",
    "TIMESTAMP 'infinity'",
    "TIMESTAMP '-infinity'",
]


def _as(kind: str, value: str) -> str:
    """`value` (a DATE or TIMESTAMP expression) as `kind`, or NULL where that cast fails (a DATE beyond TIMESTAMP's
    range is then drawn again as a DATE: the column's type decides what it can hold)."""
    return f"TRY_CAST({value} AS {kind})"


VALUES = st.one_of(
    st.sampled_from(_EDGES),
    st.integers(-_DAYS, _DAYS).map(lambda n: f"DATE '1970-01-01' + {n}"),
    st.integers(*_MICROS).map(lambda n: f"make_timestamp({n})"),
    # dense around TIMESTAMP's ends, where date_trunc starts failing
    st.integers(-106_754_000, -106_750_000).map(lambda n: f"DATE '1970-01-01' + {n}"),
    st.integers(106_750_000, 106_754_000).map(lambda n: f"DATE '1970-01-01' + {n}"),
    st.integers(_MICROS[0], _MICROS[0] + 400 * 86_400_000_000).map(lambda n: f"make_timestamp({n})"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), values=st.lists(VALUES, min_size=1, max_size=4))
def test_every_value_the_build_accepts_is_safe_for_every_allowed_calendar_function(
    kind: str, values: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'Asia/Shanghai'")
        rows = " UNION ALL ".join(f"SELECT {_as(kind, v)} AS x" for v in values)
        connection.execute(f"COPY ({rows}) TO '{path}' (FORMAT parquet)")
        table = storage.describe_parquet(connection, path)
        try:
            storage.check_dates(table)
        except Unprocessable as refused:
            assert refused.code == "date_out_of_range"
            return
        # +-infinity are refused too (they cost less than a finite date: storage.DATE_RANGE)
        assert connection.execute(
            f"SELECT count(*) FILTER (WHERE isinf(x)) FROM read_parquet('{path}')"
        ).fetchone() == (0,)
        for zone in ("UTC", "Asia/Shanghai", "America/Los_Angeles"):
            connection.execute(f"SET TimeZone = '{zone}'")
            for function in FUNCTIONS[kind]:
                # each function over each accepted value raises nothing (a raise would be TRY()'s slow path)
                connection.execute(f"SELECT {function} FROM read_parquet('{path}')").fetchall()


def test_a_recipe_s_min_and_max_drop_the_refused_dates_as_the_message_says(market: Market) -> None:
    """A CSV built with a recipe typing the column `date`: refused while it holds 300000-01-01 and infinity; with the
    recipe's min and max set to DATE_RANGE, as the message advises, those rows are rejected and the version builds."""
    days = {3: "300000-01-01", 4: "infinity"}
    rows = [{"person": i % 30, "region": "north", "day": days.get(i, f"2024-01-{i % 28 + 1:02d}")} for i in range(90)]
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "days").status_code == 201
    uploaded = market.client.post("/v1/uploads?filename=days.csv", headers=operator.headers, content=csv_bytes(rows))
    assert uploaded.status_code == 201, uploaded.text
    days_policy = policy("days", ["day"], measures={}, min_group_size=10)
    low, high = storage.DATE_RANGE
    for bounds in ({}, {"min": low, "max": high}):
        columns = {"person": {"type": "integer"}, "region": {"type": "varchar"}, "day": {"type": "date", **bounds}}
        built = market.client.post(
            "/v1/products/days/builds",
            headers={**operator.headers, "Accept-Language": "en"},
            json={
                "tables": {"days": uploaded.json()["id"]},
                "recipe": {"tables": {"days": {"columns": columns}}},
                "policy": days_policy,
            },
        )
        if not bounds:
            assert built.status_code == 422, built.text
            error = built.json()["error"]
            assert error["code"] == "date_out_of_range" and f"min '{low}' and max '{high}'" in error["message"], error
        else:
            assert built.status_code == 201, built.text
            assert built.json()["tables"][0]["row_count"] == 88, built.json()["tables"]
