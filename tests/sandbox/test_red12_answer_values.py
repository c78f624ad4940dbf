"""Red team red12 (issue 9, session 8): every value an answer can hold leaves as JSON, and an answer
value JSON cannot carry fails the query cleanly (a 4xx) without killing the sandbox worker.

Found on main, against the demo:
- a DECIMAL with more than 28 digits before the point (a literal such as 1234567890123456789012345678901.5, or
  `sum(arr_delay * 1.5) + 99999999999999999999999999999.0`, DECIMAL(38, 1)) made the service's conversion
  (`value % 1`, at Python's default 28-digit precision) raise: HTTP 500 after the worker had answered;
- an INTERVAL beyond Python's timedelta (`INTERVAL 100000000 YEAR` in the select list or a WHERE constant,
  `sum(distance) * INTERVAL 1 MONTH`) raised OverflowError while the worker converted its rows: the worker
  process died, the buyer got `resource_limit` after a respawn, and the next query paid a cold worker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sandbox import pool as pool_module
from sandbox.errors import QueryFailed, QueryRefused
from tests.conftest import DemoMarket

SLUG = "nyc-flights-2013"


def _post(market: DemoMarket, sql: str) -> Any:
    return market.client.post(
        "/v1/queries", headers=market.headers("buyer_commercial"), json={"product": SLUG, "sql": sql}
    )


def _worker_pids() -> set[int]:
    return {pid for running in list(pool_module._pools.values()) for pid in running.worker_pids()}


def test_decimals_of_38_digits_are_answered_not_a_500(demo_market: DemoMarket) -> None:
    literal = _post(
        demo_market,
        "SELECT origin, count(*) AS n, 1234567890123456789012345678901.5 AS d FROM flights GROUP BY origin",
    )
    assert literal.status_code == 200, literal.text
    assert [row[2] for row in literal.json()["rows"]] == [pytest.approx(1.2345678901234568e30)] * 3
    whole = _post(
        demo_market,
        "SELECT origin, count(*) AS n, 1234567890123456789012345678901234567.0 AS d FROM flights GROUP BY origin",
    )
    assert whole.status_code == 200, whole.text
    # A whole DECIMAL leaves as an exact JSON integer, however many digits.
    assert {row[2] for row in whole.json()["rows"]} == {1234567890123456789012345678901234567}
    aggregate = _post(
        demo_market,
        "SELECT origin, sum(arr_delay * 1.5) + 99999999999999999999999999999.0 AS s FROM flights GROUP BY origin",
    )
    assert aggregate.status_code == 200, aggregate.text
    assert all(abs(row[1] - 1e29) < 1e23 for row in aggregate.json()["rows"])


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        (
            "SELECT origin, count(*) AS n, INTERVAL 100000000 YEAR AS i FROM flights GROUP BY origin",
            "answer_out_of_range",
        ),
        (
            "SELECT origin, count(*) AS n, -INTERVAL 100000000 YEAR AS i FROM flights GROUP BY origin",
            "answer_out_of_range",
        ),
        # A constant of the WHERE is computed before any row is read (Plan.constants_sql): refused as a constant.
        (
            "SELECT origin, count(*) AS n FROM flights WHERE INTERVAL 100000000 YEAR > INTERVAL 1 DAY GROUP BY origin",
            "constant_error",
        ),
        # INTERVAL arithmetic on an aggregate: refused up front since branch sbx-seed (it can fail at run
        # time for some values of the aggregate: algebra.temporal_arithmetic).
        (
            "SELECT origin, sum(distance) * INTERVAL 1 MONTH AS i FROM flights GROUP BY origin",
            "post_aggregate_may_fail",
        ),
        ("SELECT origin, count(*) * INTERVAL 1000 YEAR AS i FROM flights GROUP BY origin", "post_aggregate_may_fail"),
    ],
)
def test_an_interval_json_cannot_carry_is_a_4xx_and_the_worker_survives(
    demo_market: DemoMarket, sql: str, code: str
) -> None:
    warm = _post(demo_market, "SELECT origin, count(*) AS n FROM flights GROUP BY origin")
    assert warm.status_code == 200, warm.text
    before = _worker_pids()
    assert before
    response = _post(demo_market, sql)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert "INTERVAL" in response.json()["error"]["message"]
    after = _post(demo_market, "SELECT dest, count(*) AS n FROM flights GROUP BY dest")
    assert after.status_code == 200, after.text
    assert _worker_pids() == before  # no worker died and was replaced
    usage = demo_market.client.get("/v1/usage", headers=demo_market.headers("buyer_commercial")).json()["items"]
    assert usage[1]["charge_type"] == "rejected" and usage[1]["amount_minor"] == 0


def test_extreme_dates_and_intervals_within_range_are_answered(demo_market: DemoMarket) -> None:
    sql = (
        "SELECT origin, count(*) AS n, DATE '5877641-06-25' AS far, TIMESTAMP '294000-01-01' AS later, "
        "INTERVAL 2000000 DAY AS long, 170141183460469231731687303715884105727 AS huge, "
        "340282366920938463463374607431768211455 AS uhuge, 10^400 AS inf FROM flights GROUP BY origin"
    )
    response = _post(demo_market, sql)
    assert response.status_code == 200, response.text
    row = response.json()["rows"][0]
    assert row[2:] == [
        "5877641-06-25",
        "294000-01-01 00:00:00",
        "P2000000DT0S",
        170141183460469231731687303715884105727,
        340282366920938463463374607431768211455,
        None,
    ]


# The property: every literal of the types the validator lets through, in the select list of an accepted
# query run through a sandbox worker, is answered with a JSON value, or the query fails with a 4xx code
# (never another exception: a 500), and the worker survives.
_INTEGERS = st.integers(min_value=-(2**127) + 1, max_value=2**128 - 1).map(str)
_DECIMALS = st.builds(
    lambda whole, fraction: f"{whole}.{fraction}",
    st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.integers(28, 36).map(lambda n: 10**n - 1)),
    st.integers(min_value=0, max_value=10**7),
)
_DATES = st.builds(
    lambda y, m, d, bc: f"DATE '{y:04d}-{m:02d}-{d:02d}{' (BC)' if bc else ''}'",
    st.integers(1, 5_877_640),
    st.integers(1, 12),
    st.integers(1, 28),
    st.booleans(),
)
_TIMESTAMPS = st.builds(
    lambda y, h, bc: f"TIMESTAMP '{y:04d}-01-01 {h:02d}:00:00{' (BC)' if bc else ''}'",
    st.integers(1, 290_000),
    st.integers(0, 23),
    st.booleans(),
)
_INTERVALS = st.builds(
    lambda n, unit, sign: f"{sign}INTERVAL {n} {unit}",
    st.one_of(st.integers(0, 2**31 - 1), st.sampled_from([6_000_000, 100_000_000, 2**31 - 1])),
    st.sampled_from(["YEAR", "MONTH", "DAY", "HOUR", "SECOND"]),
    st.sampled_from(["", "-"]),
)
_FLOATS = st.sampled_from(["1e308 * 10", "-1e308 * 10", "0.1", "1e-320", "10^400"])
LITERALS = st.one_of(_INTEGERS, _DECIMALS, _DATES, _TIMESTAMPS, _INTERVALS, _FLOATS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example("INTERVAL 100000000 YEAR")
@example("99999999999999999999999999999.5")
@given(LITERALS)
def test_every_answer_value_leaves_as_json_or_fails_with_a_4xx(run, pool, literal: str) -> None:
    sql = f"SELECT region, count(*) AS n, {literal} AS v FROM people GROUP BY region"
    before = set(pool.worker_pids())
    try:
        result = run(sql)
    except QueryFailed as failed:
        assert failed.code in ("answer_out_of_range", "query_failed"), (literal, failed.code)
    except QueryRefused:
        pass
    else:
        json.dumps(result.rows, allow_nan=False)
    assert before <= set(pool.worker_pids()) | set(pool.worker_pids(busy=True)), literal


# The conversion alone, over the Python values DuckDB's fetch gives for each type (DECIMAL up to 38
# digits with any scale, integers of HUGEINT/UHUGEINT range, doubles with NaN and infinities, dates,
# timestamps, durations, BLOB bytes): always a value json.dumps accepts with allow_nan=False.
_PYTHON_VALUES = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True, places=None).filter(
        lambda d: not d.is_finite() or (len(d.as_tuple().digits) <= 38 and -38 <= d.as_tuple().exponent <= 38)
    ),
    st.integers(min_value=-(2**127), max_value=2**128 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(),
    st.datetimes(),
    st.times(),
    st.timedeltas(),
    st.binary(max_size=64),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(_PYTHON_VALUES)
def test_every_fetched_value_converts_to_json(value: Any) -> None:
    from sandbox.service import _jsonable

    json.dumps(_jsonable(value), allow_nan=False)
