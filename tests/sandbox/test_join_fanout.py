"""The join fan-out bound (branch sbx-fanout; docs/sandbox.md, "Join fan-out: a bound on F").

A root row meets, in a joined table, the rows whose key equals its own stored value: up to that table's
fan-out F on the key (the most rows sharing one value), through a chain the product of the tables' F. A
hidden row whose key value is a skewed one costs F rows of work where another costs one, so a join whose
product of fan-outs (each rounded up to a power of two) exceeds `MARKET_SANDBOX_MAX_JOIN_FANOUT` (default
1024) is refused before it runs, `join_fanout`, decided from public per-version statistics and the query
text only. A lookup (F = 1 on a dimension table's key) is allowed; a cross or inequality join's F is the
other table's row count.

- over HTTP: a skewed join refused (en and zh-CN), a lookup and a moderate join answered, a chain whose
  product exceeds the limit refused, the limit raised through the setting;
- hypothesis, through the sandbox service and a worker: refused iff the product of fan-outs exceeds the
  limit, with statistics computed at build time or by the worker; accepted joins answer as the naive
  threshold reference does;
- red10's `f.dest > w.origin` CROSS JOIN draw: refused, the same whatever the hidden flight's destination.

Every test here failed on main (no bound: every join ran).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.accounts.models import Role
from products.storage import table_statistics
from sandbox.engine import EngineLimits
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query
from tests.conftest import Market, running_market
from tests.factories import csv_bytes, grant, listed_product, query
from tests.metering.helpers import usage
from tests.sandbox.conftest import write_parquet
from tests.sandbox.test_red9_oracles import FLIGHTS, POLICY, WEATHER, folders  # noqa: F401 (a fixture)

# -- over HTTP ----------------------------------------------------------------------------------------

PEOPLE, SHOPS, DEPOTS = 3_000, 2_000, 1_000
SKEWED = 1_100
"""Shops in region 'r0': the skewed value (fan-out 1,100 + a few, 2,048 rounded up)."""

HTTP_POLICY: dict[str, Any] = {
    "min_group_size": 10,
    "tables": {
        "people": {
            "privacy_unit": "person_id",
            "dimensions": ["region", "category", "month"],
            "measures": ["amount"],
            "bounds": {"amount": {"min": 0, "max": 1000}},
        },
        "shops": {
            "privacy_unit": "owner_id",
            "dimensions": ["region", "kind", "code"],
            "measures": ["rent"],
            "bounds": {"rent": {"min": 0, "max": 10_000}},
        },
        "depots": {
            "privacy_unit": "keeper_id",
            "dimensions": ["kind"],
            "measures": ["stock"],
            "bounds": {"stock": {"min": 0, "max": 1000}},
        },
    },
}


def _http_tables() -> dict[str, bytes]:
    people = [
        {
            "person_id": f"P{i % 300:04d}",
            "region": f"r{i % 40}",
            "category": f"k{i % 50}",
            "month": i % 12 + 1,
            "amount": i % 100,
        }
        for i in range(PEOPLE)
    ]
    shops = [
        {
            "owner_id": f"O{i % 200:04d}",
            "region": "r0" if i < SKEWED else f"r{1 + i % 39}",
            "kind": f"k{i % 32}",  # 62 or 63 shops per kind: fan-out 64
            "code": f"k{i}",  # one shop per code: a lookup
            "rent": 1000 + i % 500,
        }
        for i in range(SHOPS)
    ]
    depots = [
        {"keeper_id": f"D{i % 100:03d}", "kind": f"k{i % 32}", "stock": i % 50}  # 31 or 32 per kind
        for i in range(DEPOTS)
    ]
    return {"people.csv": csv_bytes(people), "shops.csv": csv_bytes(shops), "depots.csv": csv_bytes(depots)}


SKEWED_JOIN = (
    "SELECT people.month, count(*) AS n FROM people JOIN shops ON people.region = shops.region "
    "WHERE people.category = 'k7' GROUP BY people.month"
)
LOOKUP_JOIN = (
    "SELECT people.month, count(*) AS n, sum(shops.rent) AS rent FROM people "
    "JOIN shops ON people.category = shops.code GROUP BY people.month"
)
MODERATE_JOIN = (
    "SELECT people.month, count(*) AS n FROM people JOIN shops ON people.category = shops.kind GROUP BY people.month"
)
CHAIN_JOIN = (
    "SELECT people.month, count(*) AS n FROM people JOIN shops ON people.category = shops.kind "
    "JOIN depots ON shops.kind = depots.kind GROUP BY people.month"
)


@pytest.fixture
def joined(market: Market) -> tuple[Market, Any]:
    listed = listed_product(market, "fanout", tables=_http_tables(), policy=HTTP_POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    return market, buyer


def _refused(market: Market, buyer: Any, sql: str, language: str) -> dict[str, Any]:
    response = market.client.post(
        "/v1/queries",
        headers={**buyer.headers, "Accept-Language": language},
        json={"product": "fanout", "sql": sql},
    )
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "join_fanout"
    return error


def test_a_skewed_join_is_refused_with_what_to_change_in_en_and_zh(joined: tuple[Market, Any]) -> None:
    market, buyer = joined
    message = _refused(market, buyer, SKEWED_JOIN, "en")["message"]
    for part in ("shops", "region", "2048", "1024", "more selective key", "aggregate shops"):
        assert part in message, message
    chinese = _refused(market, buyer, SKEWED_JOIN, "zh-CN")["message"]
    for part in ("shops", "region", "2048", "1024", "选择性更高的连接键", "汇总"):
        assert part in chinese, chinese
    # Refused before it ran: recorded as rejected, never charged.
    records = [r for r in usage(market, buyer) if r["charge_type"] == "rejected"]
    assert len(records) == 2 and all(r["amount_minor"] == 0 for r in records)


def test_a_lookup_and_a_moderate_join_are_answered(joined: tuple[Market, Any]) -> None:
    market, buyer = joined
    for sql in (LOOKUP_JOIN, MODERATE_JOIN):
        response = query(market, buyer, "fanout", sql)
        assert response.status_code == 200, (sql, response.text)
        assert response.json()["rows"], sql


def test_a_chain_multiplies_its_fanouts(joined: tuple[Market, Any]) -> None:
    """people → shops on kind (64) → depots on kind (32): 2,048 rows per person row, over 1,024, though
    each join alone is under it (depots alone: 32)."""
    market, buyer = joined
    error = _refused(market, buyer, CHAIN_JOIN, "en")
    assert "2048" in error["message"] and "shops" in error["message"], error
    alone = "SELECT people.month, count(*) AS n FROM people JOIN depots ON people.category = depots.kind GROUP BY 1"
    assert query(market, buyer, "fanout", alone).status_code == 200


@pytest.fixture
def roomy(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data", sandbox_max_join_fanout=4096) as running:
        yield running


def test_the_limit_is_a_setting(roomy: Market) -> None:
    listed = listed_product(roomy, "fanout", tables=_http_tables(), policy=HTTP_POLICY)
    buyer = roomy.actor(Role.BUYER)
    grant(roomy, listed, buyer, purpose="commercial", plan="standard")
    for sql in (SKEWED_JOIN, CHAIN_JOIN):
        assert query(roomy, buyer, "fanout", sql).status_code == 200, sql


# -- hypothesis, through the sandbox service -----------------------------------------------------------

LIMIT = 16
K = 2
PROPERTY_POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": K,
        "tables": {
            name: {
                "privacy_unit": "uid",
                "dimensions": ["g", "a", "b"],
                "measures": ["m"],
                "bounds": {"m": {"min": 0, "max": 100}},
            }
            for name in ("t", "s", "u")
        },
    }
)
TYPES = {"uid": "VARCHAR", "g": "INTEGER", "a": "VARCHAR", "b": "INTEGER", "m": "INTEGER"}


@pytest.fixture(scope="module")
def property_pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(EngineLimits(timeout_seconds=30, workers=1, max_join_fanout=LIMIT))
    yield workers
    workers.close()


def _rows(draw: st.DrawFn, n: int) -> list[dict[str, Any]]:
    a_values = draw(st.integers(1, 6))
    b_values = draw(st.integers(1, 6))
    skew = draw(st.integers(0, n))  # rows sharing a = 'x0' (a skewed key)
    return [
        {
            "uid": f"U{draw(st.integers(0, 5))}",
            "g": i % 3,
            "a": "x0" if i < skew else f"x{i % a_values}",
            "b": None if draw(st.booleans()) and i % 5 == 0 else i % b_values,
            "m": i % 10,
        }
        for i in range(n)
    ]


CONDITIONS = ["{x}.a = {y}.a", "{x}.b = {y}.b", "{x}.b IS NOT DISTINCT FROM {y}.b", "{x}.a < {y}.a", ""]


@st.composite
def fixtures(draw: st.DrawFn) -> dict[str, Any]:
    tables = {"t": _rows(draw, draw(st.integers(30, 45)))}
    tables["s"] = _rows(draw, draw(st.integers(1, 29)))
    three = draw(st.booleans())
    if three:
        tables["u"] = _rows(draw, draw(st.integers(1, 29)))
    joins = [("s", draw(st.sampled_from(["JOIN", "LEFT JOIN"])), draw(st.sampled_from(CONDITIONS)), "t")]
    if three:
        joins.append(("u", "JOIN", draw(st.sampled_from(CONDITIONS[:4])), draw(st.sampled_from(["t", "s"]))))
    return {"tables": tables, "joins": joins, "built": draw(st.booleans())}


def _sql(joins: list[tuple[str, str, str, str]], aggregates: str) -> str:
    text = "FROM t"
    for table, kind, condition, other in joins:
        text += f" CROSS JOIN {table}" if not condition else f" {kind} {table} ON " + condition.format(x=other, y=table)
    return f"SELECT t.g, {aggregates} {text} GROUP BY t.g"


def _bracket(n: int) -> int:
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def _expected_fanout(tables: dict[str, list[dict[str, Any]]], joins: list[tuple[str, str, str, str]]) -> int:
    """The reference: per joined table, the most rows sharing one key value of an `=` (NULL is no value) or of
    a LEFT JOIN's IS NOT DISTINCT FROM (NULL matches NULL), or its row count without one (a CROSS JOIN, `<`;
    and an inner IS NOT DISTINCT FROM alone, which stage 1 runs as a cross product tested after the join: it
    rejects no NULL, so whole_sides has no marker); each rounded up to a power of two; multiplied."""
    product = 1
    for table, kind, condition, _ in joins:
        rows = tables[table]
        fanout = _bracket(len(rows))
        nulls = "NOT DISTINCT" in condition and kind == "LEFT JOIN"
        if " = " in condition or nulls:
            column = "a" if ".a" in condition else "b"
            values = [r[column] for r in rows if r[column] is not None or nulls]
            fanout = _bracket(max((values.count(v) for v in set(values)), default=0))
        product *= max(1, fanout)
    return product


_files = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fixture=fixtures())
def test_refused_iff_the_product_of_fanouts_exceeds_the_limit_and_answers_are_unchanged(
    fixture: dict[str, Any], property_pool: WorkerPool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp(f"fanout-{next(_files)}")
    roles = {"uid": "privacy_unit", "g": "dimension", "a": "dimension", "b": "dimension", "m": "measure"}
    tables: dict[str, TableFile] = {}
    for name, rows in fixture["tables"].items():
        path = write_parquet(folder / f"{name}.parquet", rows, TYPES)
        statistics = table_statistics(path, list(TYPES), roles) if fixture["built"] else {}
        tables[name] = TableFile(name=name, path=path, row_count=len(rows), statistics=statistics)
    joins = fixture["joins"]
    inner = all(kind == "JOIN" for _, kind, _, _ in joins)
    aggregates = "count(*), sum(t.m)" if inner else "count(*)"
    sql = _sql(joins, aggregates)
    limits = EngineLimits(timeout_seconds=30, workers=1, max_join_fanout=LIMIT)
    refused = _expected_fanout(fixture["tables"], joins) > LIMIT
    try:
        result = run_query(sql, PROPERTY_POLICY, tables, limits, 10_000, property_pool)
    except QueryRefused as error:
        assert error.code == "join_fanout" and refused, (sql, error)
        return
    assert not refused, sql
    # The naive threshold reference: groups whose rows hold K units of every table they read.
    with duckdb.connect() as connection:
        for name, table in tables.items():
            connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{table.path}')")
        units = ", ".join(f"count(DISTINCT {name}.uid)" for name in fixture["tables"])
        rows = connection.execute(_sql(joins, f"{aggregates}, {units}")).fetchall()
    width = 2 + aggregates.count(",")
    expected = sorted(tuple(row[:width]) for row in rows if all(n >= K for n in row[width:]))
    assert sorted(tuple(row) for row in result.rows) == expected, sql


# -- red10's draw: a cross join with an inequality ----------------------------------------------------

RED10 = "SELECT count(*) FROM flights f CROSS JOIN weather w WHERE f.dest > w.origin"


def test_red10_cross_join_inequality_is_bounded_by_the_row_count_whatever_the_hidden_row(
    folders: dict[bool, dict[str, Path]],  # noqa: F811 (the imported fixture)
    property_pool: WorkerPool,
) -> None:
    """`f.dest > w.origin` after a CROSS JOIN: each flight meets every weather row its dest exceeds, so
    the hidden flight's own dest ('LEX' or not) moved the work by up to 3,000 rows (red10). Its fan-out is
    weather's row count (4,096 rounded up): refused, with the same answer on both fixtures, and for the
    buyer's filter to one row or to none."""
    limits = EngineLimits(timeout_seconds=30, workers=1, max_join_fanout=LIMIT)
    seen = set()
    for files in folders.values():
        tables = {
            "flights": TableFile(name="flights", path=files["flights"], row_count=FLIGHTS),
            "weather": TableFile(name="weather", path=files["weather"], row_count=WEATHER),
        }
        for sql in (RED10, RED10 + " AND f.dest = 'LEX'", RED10 + " AND f.dest = 'ZZZ'"):
            with pytest.raises(QueryRefused) as refused:
                run_query(sql, POLICY, tables, limits, 10_000, property_pool)
            assert refused.value.code == "join_fanout"
            seen.add(tuple(sorted(refused.value.params.items())))
    assert len(seen) == 1, seen
    (params,) = seen
    assert dict(params)["fanout"] == "4096" and dict(params)["table"] == "weather"
