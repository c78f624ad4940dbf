"""The demo's small queries answered from the build-time summary alone (branch cube13, docs/sandbox.md "Answered
from the build-time summary (cube13)").

On a copy of the demo marketplace, a buyer's small queries whose every aggregate the summary holds per combination
(count(*), count(m), count(DISTINCT unit), sum and avg of an integer measure whose bounds times the rows stay under
2^53: the demo's four are BIGINT) take the cube: the regulator's audit shows the statement reading the summary
(`__summary__flights`, its `__rows`) and never the table. Each answer is exactly the exact statement's
(engine.execute_single on the version's own files, one DuckDB thread), rows and values, through the API's JSON. A
query with the variance family takes pre16's summary path (the table read), answered as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from market.demo import FLIGHTS_POLICY, FLIGHTS_SLUG
from products import repository as products_repo
from products import service as products
from products.models import ProductVersion
from sandbox import service
from sandbox.engine import EngineLimits, TableStatistics, execute_single, open_locked
from tests.conftest import DemoMarket

CUBE = [
    "SELECT origin, count(*) AS flights, avg(dep_delay) AS delay FROM flights GROUP BY origin",
    "SELECT carrier, month, count(*) AS flights, avg(arr_delay) AS delay FROM flights GROUP BY carrier, month",
    "SELECT dest, count(*) AS flights, avg(arr_delay) AS delay FROM flights WHERE month = 7 GROUP BY dest",
    "SELECT month, count(*) AS flights, sum(distance) AS miles FROM flights GROUP BY month ORDER BY month",
    "SELECT origin, dest, count(*) AS flights FROM flights WHERE origin = 'JFK' GROUP BY origin, dest",
    "SELECT count(*) AS n, sum(air_time) AS t, count(arr_delay) AS c FROM flights WHERE dest = 'ZZZ'",
    "SELECT hour, count(DISTINCT tailnum) AS planes, sum(dep_delay) AS d FROM flights WHERE carrier = 'HA' "
    "GROUP BY hour HAVING count(*) > 20",
]
SUMMARY = ["SELECT carrier, avg(dep_delay) AS delay, stddev(dep_delay) AS spread FROM flights GROUP BY carrier"]


def _tables(market: DemoMarket) -> dict[str, service.TableFile]:
    with market.database.transaction() as session:
        product = products_repo.by_slug(session, FLIGHTS_SLUG)
        assert product is not None and product.listed_version_id is not None
        version = session.get(ProductVersion, product.listed_version_id)
        assert version is not None
        return products.version_tables(market.settings, version)


def _exact(tables: dict[str, service.TableFile], sql: str) -> list[list[Any]]:
    plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
    connection = open_locked({n: t.path for n, t in tables.items()}, EngineLimits(threads=1))
    try:
        rows = execute_single(connection, plan, 10_000, TableStatistics(connection, {}, "v")).rows
    finally:
        connection.close()
    return [[service._jsonable(v) for v in row] for row in rows]


def test_the_demo_s_small_queries_are_answered_from_the_summary_alone(demo_market: DemoMarket) -> None:
    tables = _tables(demo_market)
    described = tables["flights"].statistics["summary"]
    assert described["exact"] == ["dep_delay", "arr_delay", "air_time", "distance"]
    answered: dict[str, Any] = {}
    for sql in CUBE + SUMMARY:
        plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
        assert service.strategy(plan, tables) == ("cube" if sql in CUBE else "summary"), sql
        response = demo_market.client.post(
            "/v1/queries", headers=demo_market.headers("buyer_commercial"), json={"product": FLIGHTS_SLUG, "sql": sql}
        )
        assert response.status_code == 200, response.text
        answered[sql] = response.json()["rows"]
    for sql, rows in answered.items():
        assert rows == _exact(tables, sql), sql
    assert answered[CUBE[0]] and answered[CUBE[2]]  # answers with rows, not only empty ones
    audit = demo_market.client.get("/v1/audit/queries", headers=demo_market.headers("regulator"), params={"limit": 20})
    assert audit.status_code == 200, audit.text
    runs = {item["sql"]: item["sql_run"] for item in audit.json()["items"]}
    for sql in CUBE:
        assert '"__summary__flights"' in runs[sql] and '"__rows"' in runs[sql], runs[sql]
        assert 'FROM "flights"' not in runs[sql], runs[sql]  # no row of the table read
    for sql in SUMMARY:
        assert 'FROM "flights" AS "flights"' in runs[sql] and '"__summary__flights"' in runs[sql], runs[sql]


def test_a_summary_built_before_the_cube_answers_through_pre16(demo_market: DemoMarket, tmp_path: Path) -> None:
    """A version whose summary records no cube (built before it, or another layout) never takes the cube."""
    tables = _tables(demo_market)
    sql = CUBE[0]
    plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
    stale = {
        name: service.TableFile(
            t.name,
            t.path,
            t.row_count,
            statistics={**t.statistics, "summary": {k: v for k, v in t.statistics["summary"].items() if k != "cube"}},
        )
        for name, t in tables.items()
    }
    assert service.strategy(plan, stale) == "summary"
    assert service.cube_for(plan, stale) is None
