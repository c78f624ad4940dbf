"""The sandbox over HTTP: structured queries, refusals as 4xx, measurements, and a crash-proof API."""

from __future__ import annotations

import os
import signal

from market.accounts.models import Role
from sandbox.engine import EngineLimits
from sandbox.pool import shared_pool
from tests.conftest import Market
from tests.factories import grant, listed_product, query

BY_REGION = "SELECT region, count(*) AS n, sum(amount) AS total FROM people GROUP BY region ORDER BY region"
STRUCTURED_BY_REGION = {
    "table": "people",
    "dimensions": ["region"],
    "measures": [{"aggregate": "count", "as": "n"}, {"aggregate": "sum", "column": "amount", "as": "total"}],
    "order_by": [{"column": "region"}],
}


def _buyer(market: Market):
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    return listed, buyer


def _post(market: Market, buyer, body: dict):
    return market.client.post("/v1/queries", headers=buyer.headers, json=body)


def test_a_structured_query_returns_what_the_same_sql_returns(market: Market) -> None:
    listed, buyer = _buyer(market)
    written = query(market, buyer, listed.slug, BY_REGION)
    structured = _post(market, buyer, {"product": listed.slug, "query": STRUCTURED_BY_REGION})
    assert written.status_code == 200 and structured.status_code == 200, structured.text
    assert structured.json()["columns"] == written.json()["columns"] == ["region", "n", "total"]
    assert structured.json()["rows"] == written.json()["rows"]
    assert structured.json()["usage"]["bytes_scanned"] == written.json()["usage"]["bytes_scanned"]


def test_structured_filters_joins_and_limits_compile_to_checked_sql(market: Market) -> None:
    listed, buyer = _buyer(market)
    body = {
        "table": "people",
        "dimensions": ["category"],
        "measures": [
            {"aggregate": "avg", "column": "trips", "as": "trips"},
            {"aggregate": "count_distinct", "column": "person_id", "as": "people"},
        ],
        "filters": [
            {"column": "month", "op": "in", "value": [1, 2]},
            {"column": "region", "op": "!=", "value": "nowhere"},
            {"column": "month", "op": "between", "value": [1, 3]},
            {"column": "region", "op": "is_not_null"},
        ],
        "order_by": [{"column": "people", "descending": True}],
        "limit": 5,
    }
    response = _post(market, buyer, {"product": listed.slug, "query": body})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [["common", 3.5, 50]]
    assert "suppressed_groups" not in response.json() and "suppressed_groups" not in response.json()["usage"]
    assert response.json()["suppression"]["min_group_size"] == 10


def test_a_structured_query_is_held_to_the_same_policy(market: Market) -> None:
    listed, buyer = _buyer(market)
    on_unit = {"table": "people", "dimensions": ["person_id"], "measures": [{"aggregate": "count"}]}
    refused = _post(market, buyer, {"product": listed.slug, "query": on_unit})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "protected_column"
    measure_filter = {
        "table": "people",
        "measures": [{"aggregate": "count"}],
        "filters": [{"column": "amount", "op": ">", "value": 90}],
    }
    refused = _post(market, buyer, {"product": listed.slug, "query": measure_filter})
    assert refused.json()["error"]["code"] == "measure_outside_aggregate"
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert [u["charge_type"] for u in usage] == ["rejected", "rejected"]


def test_sql_and_query_together_or_neither_are_refused(market: Market) -> None:
    listed, buyer = _buyer(market)
    both = _post(market, buyer, {"product": listed.slug, "sql": BY_REGION, "query": STRUCTURED_BY_REGION})
    neither = _post(market, buyer, {"product": listed.slug})
    bad_op = _post(
        market,
        buyer,
        {"product": listed.slug, "query": {**STRUCTURED_BY_REGION, "filters": [{"column": "region", "op": "~"}]}},
    )
    assert {both.status_code, neither.status_code, bad_op.status_code} == {422}


def test_refusals_over_http_name_the_construct(market: Market) -> None:
    listed, buyer = _buyer(market)
    response = query(market, buyer, listed.slug, "SELECT region, max(amount) FROM people GROUP BY region")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "disallowed_aggregate" and error["message"].startswith("max() can reveal a single row")


def test_measurements_are_deterministic(market: Market) -> None:
    listed, buyer = _buyer(market)
    first = query(market, buyer, listed.slug, BY_REGION).json()["usage"]
    second = query(market, buyer, listed.slug, BY_REGION).json()["usage"]
    for key in ("rows_scanned", "bytes_scanned", "result_rows"):
        assert first[key] == second[key]
    assert first["rows_scanned"] == 180 and first["result_rows"] == 4 and first["bytes_scanned"] > 0
    narrower = query(market, buyer, listed.slug, "SELECT count(*) AS n FROM people").json()["usage"]
    assert narrower["bytes_scanned"] < first["bytes_scanned"]  # only the columns a query names are billed


def test_the_api_survives_its_sandbox_workers_dying(market: Market) -> None:
    listed, buyer = _buyer(market)
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    settings = market.settings
    pool = shared_pool(
        EngineLimits(
            memory_limit=settings.sandbox_memory_limit,
            threads=settings.sandbox_threads,
            timeout_seconds=settings.sandbox_timeout_seconds,
        )
    )
    pids = pool.worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert market.client.get("/healthz").status_code == 200
    again = query(market, buyer, listed.slug, BY_REGION)
    assert again.status_code == 200 and again.json()["rows"]
