"""Wide decimal dimensions (issue 9, branch dim15): no cast of a DECIMAL of more than 15 digits with a scale above 0
to DOUBLE or FLOAT runs on the buyer's rows.

DuckDB 2.0 casts such a value to DOUBLE about 40 times slower per row once its unscaled integer passes 2^53
(docs/sandbox.md "Wide decimals (wide15)", "Wide decimal dimensions (dim15)"): `WHERE CAST(d AS DOUBLE) > 1.5` on
a DECIMAL(38, 6) dimension took 9x longer over huge hidden values than over small ones. The sandbox's binder check
(sandbox.binding) now refuses every such cast, explicit or the binder's own, from the type alone
(`wide_decimal_cast`); comparing the DECIMAL with a decimal literal and grouping by it still answer. The product is
built through the public path (an operator uploads a Parquet file); a buyer queries it over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import binding
from tests.conftest import Market
from tests.factories import queried_product, query

POLICY: dict[str, Any] = {
    "min_group_size": 5,
    "tables": {
        "ledger": {
            "privacy_unit": "person",
            "dimensions": ["region", "d"],
            "measures": ["amount"],
            "hidden": [],
            "bounds": {"amount": {"min": 0, "max": 1000}},
        }
    },
}

LEDGER = """SELECT i % 60 AS person, ['north', 'south', 'east'][i % 3 + 1] AS region,
    CAST(CASE WHEN i % 2 = 0 THEN 1.25 ELSE 98765432101234.123456 END AS DECIMAL(38, 6)) AS d,
    CAST(i % 100 AS DECIMAL(10, 2)) AS amount
    FROM range(600) t(i)"""

REFUSED = {
    "CAST": "SELECT region, count(*) AS c FROM ledger WHERE CAST(d AS DOUBLE) > 1.5 GROUP BY region",
    "TRY_CAST": "SELECT region, count(*) AS c FROM ledger WHERE TRY_CAST(d AS DOUBLE) > 1.5 GROUP BY region",
    "::DOUBLE": "SELECT region, count(*) AS c FROM ledger WHERE d::DOUBLE > 1.5 GROUP BY region",
    "::FLOAT": "SELECT region, count(*) AS c FROM ledger WHERE d::FLOAT > 1.5 GROUP BY region",
    "+ DOUBLE": "SELECT region, count(*) AS c FROM ledger WHERE d + 1.5::DOUBLE > 3 GROUP BY region",
    "> 1e0": "SELECT region, count(*) AS c FROM ledger WHERE d > 1e0 GROUP BY region",
    "sqrt": "SELECT region, count(*) AS c FROM ledger WHERE sqrt(d) > 2 GROUP BY region",
    "expression": "SELECT region, count(*) AS c FROM ledger WHERE CAST(d * 1 AS DOUBLE) > 1.5 GROUP BY region",
    "/ 2": "SELECT region, count(*) AS c FROM ledger WHERE d / 2 > 1.5 GROUP BY region",
    # Arithmetic and numeric functions on data run in DOUBLE (sandbox.syntax.guard): a cast of d to DOUBLE
    "+ 1.5": "SELECT region, count(*) AS c FROM ledger WHERE d + 1.5 > 3 GROUP BY region",
    "abs": "SELECT region, count(*) AS c FROM ledger WHERE abs(d) > 3 GROUP BY region",
    "floor": "SELECT floor(d) AS f, count(*) AS c FROM ledger GROUP BY floor(d)",
    "round": "SELECT round(d, 2) AS r, count(*) AS c FROM ledger GROUP BY round(d, 2)",
    "%": "SELECT region, count(*) AS c FROM ledger WHERE d % 7 > 1.5 GROUP BY region",
}
SLOW = {  # on a DECIMAL of more than 18 digits (a 128-bit integer), 1.3-1.7x slower over huge values (dim15 bench)
    "VARCHAR": "SELECT region, count(*) AS c FROM ledger WHERE CAST(d AS VARCHAR) LIKE '1%' GROUP BY region",
    "DECIMAL(18, 2)": "SELECT region, count(*) AS c FROM ledger WHERE CAST(d AS DECIMAL(18, 2)) > 1.5 GROUP BY region",
    "BIGINT": "SELECT region, count(*) AS c FROM ledger WHERE TRY_CAST(d AS BIGINT) > 1 GROUP BY region",
}


@pytest.fixture
def ledger(market: Market, tmp_path: Path) -> tuple[Market, Any]:
    return market, queried_product(market, tmp_path, "ledger", LEDGER, POLICY)


def _error(market: Market, buyer: Any, sql: str, language: str) -> dict[str, Any]:
    response = market.client.post(
        "/v1/queries", headers={**buyer.headers, "Accept-Language": language}, json={"product": "ledger", "sql": sql}
    )
    assert response.status_code == 422, (sql, response.text)
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize("variant", sorted(REFUSED))
def test_every_cast_of_a_wide_decimal_dimension_to_double_is_refused_in_en_and_zh(
    ledger: tuple[Market, Any], variant: str
) -> None:
    market, buyer = ledger
    english = _error(market, buyer, REFUSED[variant], "en")
    assert english["code"] == "wide_decimal_cast", english
    for part in ("DECIMAL(38, 6)", "decimal literal", "> 1.5"):
        assert part in english["message"], english
    if variant != "expression":
        assert "d (DECIMAL(38, 6))" in english["message"], english
    chinese = _error(market, buyer, REFUSED[variant], "zh-CN")
    assert chinese["code"] == "wide_decimal_cast"
    for part in ("DECIMAL(38, 6)", "小数字面量", "> 1.5"):
        assert part in chinese["message"], chinese


@pytest.mark.parametrize("variant", sorted(SLOW))
def test_rounding_remainders_and_narrowing_casts_of_a_128_bit_decimal_are_refused_in_en_and_zh(
    ledger: tuple[Market, Any], variant: str
) -> None:
    market, buyer = ledger
    english = _error(market, buyer, SLOW[variant], "en")
    assert english["code"] == "wide_decimal_operation", english
    for part in ("d (DECIMAL(38, 6))", "more than 18 digits", "group by it", "d > 1.5"):
        assert part in english["message"], english
    chinese = _error(market, buyer, SLOW[variant], "zh-CN")
    assert chinese["code"] == "wide_decimal_operation"
    for part in ("d（DECIMAL(38, 6)）", "18 位", "分组"):
        assert part in chinese["message"], chinese


def test_comparing_with_a_decimal_literal_and_grouping_by_the_dimension_still_answer(
    ledger: tuple[Market, Any],
) -> None:
    market, buyer = ledger
    compared = query(market, buyer, "ledger", "SELECT region, count(*) AS c FROM ledger WHERE d > 1.5 GROUP BY region")
    assert compared.status_code == 200, compared.text
    assert sorted(compared.json()["rows"]) == [["east", 100], ["north", 100], ["south", 100]]
    grouped = query(market, buyer, "ledger", "SELECT d, sum(amount) AS s FROM ledger GROUP BY d ORDER BY d")
    assert grouped.status_code == 200, grouped.text
    # The keys as the service writes DECIMALs in JSON (numbers), grouped on the DECIMAL itself.
    assert [row[0] for row in grouped.json()["rows"]] == [1.25, 98765432101234.123456]
    # Comparisons, IN and BETWEEN cost the same for every value (dim15 bench): answered.
    for sql in (
        "SELECT region, count(*) AS c FROM ledger WHERE d BETWEEN 1 AND 2 OR d IN (1.25, 3.5) GROUP BY region",
        "SELECT region, count(*) AS c FROM ledger WHERE d < 2 AND d IS NOT NULL AND d <> 0 GROUP BY region",
    ):
        answered = query(market, buyer, "ledger", sql)
        assert answered.status_code == 200, (sql, answered.text)
        assert sorted(answered.json()["rows"]) == [["east", 100], ["north", 100], ["south", 100]], sql


@settings(max_examples=80, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=38),
    scale=st.integers(min_value=0, max_value=38),
    target=st.sampled_from(["DOUBLE", "FLOAT", "REAL"]),
    spelling=st.sampled_from(["CAST(d AS {t}) > 0", "TRY_CAST(d AS {t}) > 0", "d::{t} > 0", "d > 0::{t}"]),
)
def test_a_cast_to_a_float_type_is_refused_iff_more_than_15_digits_and_a_scale(
    width: int, scale: int, target: str, spelling: str
) -> None:
    scale = min(scale, width)
    with duckdb.connect() as connection:
        connection.execute(f"CREATE TABLE t (g VARCHAR, d DECIMAL({width}, {scale}))")
        copy = binding.shadow(connection, ["t"])
    try:
        sql = f"SELECT g, count(*) AS c FROM t WHERE {spelling.format(t=target)} GROUP BY g"
        refusal = binding.check(copy, sql)
        assert (refusal is not None and refusal[0] == "wide_decimal_cast") == (width > 15 and scale > 0), refusal
        # Otherwise the rules before dim15 apply: a DECIMAL to DOUBLE is a widening; FLOAT is not (`unsafe_cast`).
        assert refusal is None or refusal[0] == "wide_decimal_cast" or target != "DOUBLE", refusal
        if width > 15 and 0 < scale < width:  # what to write instead binds
            assert binding.check(copy, "SELECT g, count(*) AS c FROM t WHERE d > 0.5 GROUP BY g") is None
    finally:
        copy.close()


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=38),
    scale=st.integers(min_value=0, max_value=38),
    bound=st.one_of(st.none(), st.integers(min_value=0, max_value=12).map(lambda e: 10.0**e), st.floats(0, 1e12)),
)
def test_the_build_stores_no_measure_in_a_type_whose_cast_the_binder_refuses(
    width: int, scale: int, bound: float | None
) -> None:
    """The sandbox's own `TRY_CAST(m AS DOUBLE)` of a measure passes the same check: no built measure is a DECIMAL
    of more than 15 digits with a scale above 0 (products.storage.fast_measure_type, from the type and bounds)."""
    from products.storage import fast_measure_type
    from sandbox.policy import MeasureBounds

    scale = min(scale, width)
    bounds = None if bound is None else MeasureBounds(min=-bound, max=bound)
    rewritten = fast_measure_type(f"DECIMAL({width},{scale})", bounds)
    stored = rewritten or f"DECIMAL({width},{scale})"
    if stored.startswith("DECIMAL("):
        built_width, built_scale = (int(part) for part in stored[8:-1].split(","))
        assert not binding.slow_to_double(built_width, built_scale), (width, scale, bound, stored)
        if rewritten and bound is not None:  # the narrower DECIMAL holds every value the bounds allow, exactly
            assert built_scale == scale and bound * 10**scale < 10**built_width, (width, scale, bound, stored)
    else:
        assert stored == "DOUBLE"


def test_the_cast_of_an_exact_decimal_sum_runs_once_per_group_and_is_not_refused() -> None:
    """tpch15's exact sums, `CAST(SUM(m) AS DOUBLE)` over a DECIMAL(15, 2) measure: the sum is a DECIMAL(38, 2), cast
    once per group (aggregates read measures only, the validator), not per row."""
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE t (g VARCHAR, m DECIMAL(15, 2), d DECIMAL(38, 6))")
        copy = binding.shadow(connection, ["t"])
    try:
        assert binding.check(copy, "SELECT g, CAST(SUM(m) AS DOUBLE) AS s FROM t GROUP BY g") is None
        refused = binding.check(copy, "SELECT g, SUM(TRY_CAST(d AS DOUBLE)) AS s FROM t GROUP BY g")
        assert refused is not None and refused[0] == "wide_decimal_cast", refused
    finally:
        copy.close()
