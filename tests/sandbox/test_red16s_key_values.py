"""Red team red16s (session 12): a group key's value is the first row's, when equal keys can be told apart.

DuckDB groups by equality, and some types hold values that are equal but not the same: INTERVAL (`1 day` =
`24 hours`, `1 month` = `30 days`), FLOAT and DOUBLE (-0.0 = 0.0), TIME WITH TIME ZONE (one instant, two
offsets). A group of such keys keeps the value of the row the aggregate met FIRST. Shown bare, JSON erases the
difference (a timedelta is normalised, a zero leaves as 0.0: service._jsonable), but stage 2 computed on it:
`extract(day FROM k)`, `CAST(k AS VARCHAR)`, `k || ''`, `1 / k > 0`. So with

    SELECT extract(day FROM CASE WHEN s = 'secret' THEN INTERVAL 1 DAY ELSE INTERVAL 24 HOUR END) ...
    GROUP BY CASE WHEN s = 'secret' THEN INTERVAL 1 DAY ELSE INTERVAL 24 HOUR END

one passing group answered 1 or 0 as its first row in the file had the property or not: `arg_min` (refused by
name) by another name, on every strategy; on the demo, which carrier flew the year's first departure.

Fixed by construction (sandbox.binding.check, on DuckDB's bound plan, where the key's type is known): after
aggregation, a group key of such a type may be shown, compared or ordered (which respect equality), never
computed on. Two files with the same rows in another order must answer alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import _jsonable, plan_query
from tests.sandbox.conftest import write_parquet
from tests.sandbox.test_sbx_red15_strategies import POLICY, SIZES, TYPES, _paths, _rows, summarised

SECRET_DAY = "CASE WHEN s = 'secret' THEN INTERVAL 1 DAY ELSE INTERVAL 24 HOUR END"
SECRET_MONTH = "CASE WHEN s = 'secret' THEN INTERVAL 1 MONTH ELSE INTERVAL 30 DAY END"
SECRET_ZERO = "(CASE WHEN s = 'secret' THEN -1e0 ELSE 1e0 END) * 0e0"

LEAKS = [
    f"SELECT extract(day FROM {SECRET_DAY}) AS e, count(*) FROM t GROUP BY {SECRET_DAY}",
    f"SELECT extract(hour FROM {SECRET_DAY}) AS e, count(*) FROM t GROUP BY {SECRET_DAY}",
    f"SELECT extract(month FROM {SECRET_MONTH}) AS e, count(*) FROM t GROUP BY {SECRET_MONTH}",
    f"SELECT CAST({SECRET_DAY} AS VARCHAR) AS e, count(*) FROM t GROUP BY {SECRET_DAY}",
    f"SELECT CAST({SECRET_ZERO} AS VARCHAR) AS e, count(*) FROM t GROUP BY {SECRET_ZERO}",
    f"SELECT {SECRET_ZERO} || '' AS e, count(*) FROM t GROUP BY {SECRET_ZERO}",
    f"SELECT concat({SECRET_ZERO}, '') AS e, count(*) FROM t GROUP BY {SECRET_ZERO}",
    f"SELECT 1 / ({SECRET_ZERO}) > 0 AS e, count(*) FROM t GROUP BY {SECRET_ZERO}",
    f"SELECT count(*) FROM t GROUP BY {SECRET_ZERO} HAVING CAST({SECRET_ZERO} AS VARCHAR) = '-0.0'",
    f"SELECT g, count(*) FROM t GROUP BY g, {SECRET_DAY} ORDER BY extract(day FROM {SECRET_DAY}) LIMIT 1",
]
SAFE = [
    # shown bare, compared, ordered: equality's own reading, the same for every member of the group
    f"SELECT {SECRET_DAY} AS k, count(*) FROM t GROUP BY {SECRET_DAY}",
    f"SELECT {SECRET_ZERO} AS k, count(*) FROM t GROUP BY {SECRET_ZERO}",
    f"SELECT {SECRET_DAY} = INTERVAL 1 DAY AS k, count(*) FROM t GROUP BY {SECRET_DAY}",
    f"SELECT count(*) FROM t GROUP BY {SECRET_ZERO} HAVING {SECRET_ZERO} >= 0 ORDER BY {SECRET_ZERO}",
    # exact types stay computable after aggregation
    "SELECT g * 2 AS h, length(dest) AS l, count(*) FROM t GROUP BY g, dest",
    "SELECT extract(day FROM d) AS e, count(*) FROM t GROUP BY d",
    # the text of the key is itself a key: rows with another text are another group
    f"SELECT CAST({SECRET_DAY} AS VARCHAR) AS e, count(*) FROM t GROUP BY CAST({SECRET_DAY} AS VARCHAR)",
]


def _ordered(first_secret: bool) -> list[dict[str, Any]]:
    """Version C's rows (no hidden unit), with one row of unit 0 marked secret, placed first or last."""
    rows = _rows("C")
    marked = {**rows[0], "s": "secret"}
    rest = rows[1:]
    return [marked, *rest] if first_secret else [*rest, marked]


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, duckdb.DuckDBPyConnection]]:
    folder: Path = tmp_path_factory.mktemp("red16s-keys")
    connections = {
        name: summarised(name, write_parquet(folder / f"t{name}.parquet", _ordered(first), TYPES), len(_ordered(first)))
        for name, first in (("first", True), ("last", False))
    }
    for connection in connections.values():
        connection.execute("SET threads = 1")  # as the sandbox runs a small product
    yield connections
    for connection in connections.values():
        connection.close()


def _outcome(run: Any) -> Any:
    try:
        execution = run()
    except duckdb.Error as error:
        return ("error", type(error).__name__)
    if execution.refused is not None:
        return ("refused", execution.refused[0])
    return [tuple(repr(_jsonable(value)) for value in row) for row in execution.rows]  # as the answer leaves


@pytest.mark.parametrize("sql", LEAKS + SAFE)
def test_the_same_rows_in_another_order_answer_alike_on_every_strategy(
    sql: str, orders: dict[str, duckdb.DuckDBPyConnection]
) -> None:
    try:
        plan = plan_query(sql, POLICY, SIZES)
    except QueryRefused:
        assert sql in LEAKS, sql
        return
    outcomes = {
        (name, path): _outcome(lambda run=run: run(plan))  # type: ignore[misc]
        for name, connection in orders.items()
        for path, run in _paths(connection, name).items()
    }
    expected = outcomes[("last", "single")]
    differing = {key: value for key, value in outcomes.items() if value != expected}
    assert not differing, (sql, expected, differing)
    if sql in SAFE:
        assert isinstance(expected, list) and expected, (sql, expected)  # answered, not refused
    else:
        assert expected[0] == "refused", (sql, expected)


def test_dp_mode_still_groups_by_a_double_dimension() -> None:
    """DP mode groups by bare dimensions, ranks each unit's groups by `hash(<keys>, seed)` and the keys (both read
    only equality: DuckDB hashes equal values alike), and shows its keys as they are: the key check is the
    threshold path's, so a DOUBLE dimension keeps working there (it was refused while the check applied to DP)."""
    from sandbox import binding, dp
    from tests.factories import PEOPLE_POLICY

    raw = {**PEOPLE_POLICY, "mode": "dp", "dp": {"max_groups_per_unit": 2, "max_rows_per_group": 2}}
    policy = ProtectionPolicy.model_validate(raw)
    plan = dp.plan("SELECT month, count(*) FROM people GROUP BY month", policy, seed="v1")
    copy = duckdb.connect()
    copy.execute(
        "CREATE TABLE people (person_id VARCHAR, name VARCHAR, region VARCHAR, category VARCHAR, month DOUBLE, "
        "amount INTEGER, trips INTEGER)"
    )
    assert binding.check(copy, plan.sql, group_keys=False) is None
    assert binding.check(copy, plan.sql) is not None  # what DP would have met: the window orders by the key
    keys = 'FROM (SELECT -0.0::DOUBLE AS "__g0" UNION ALL SELECT 0.0::DOUBLE) AS "__groups"'
    assert binding.check(copy, f'SELECT hash("__g0") {keys}') is None
    assert binding.check(copy, f"SELECT \"__g0\" || '' {keys}") is not None
