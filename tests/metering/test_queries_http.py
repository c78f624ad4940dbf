"""Access requests, agreements, metered queries, quotas and idempotency over HTTP."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, ask, decide


def test_public_interest_requests_go_to_the_regulator_and_commercial_ones_to_the_operator(
    market: Market,
) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    public = ask(market, buyer, listed.slug, plan="public", purpose="public_welfare", scenario="study").json()
    assert public["reviewer_role"] == "regulator" and public["status"] == "pending"
    by_operator = decide(market, listed.operator, public["id"], decision="approve")
    assert by_operator.status_code == 403
    other_operator = market.actor(Role.OPERATOR)
    commercial = ask(market, buyer, listed.slug, plan="standard", purpose="commercial", scenario="pricing").json()
    assert commercial["reviewer_role"] == "operator"
    not_theirs = decide(market, other_operator, commercial["id"], decision="approve")
    assert not_theirs.status_code == 404
    assert [
        r["id"] for r in market.client.get("/v1/access-requests", headers=listed.operator.headers).json()["items"]
    ] == [commercial["id"]]
    assert [
        r["id"] for r in market.client.get("/v1/access-requests", headers=listed.regulator.headers).json()["items"]
    ] == [public["id"]]


def test_a_plan_must_fit_the_purpose(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    response = ask(market, buyer, listed.slug, plan="public", purpose="commercial", scenario="x")
    assert response.status_code == 422 and response.json()["error"]["code"] == "plan_purpose_mismatch"


def test_rejected_request_gives_no_access(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    created = ask(market, buyer, listed.slug, plan="public", purpose="public_governance", scenario="x").json()
    decide(market, listed.regulator, created["id"], decision="reject", reason="Purpose is not public interest.")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 403
    twice = decide(market, listed.regulator, created["id"], decision="approve")
    assert twice.status_code == 409


def test_commercial_charge_is_per_query_plus_per_gb_and_public_is_free(market: Market) -> None:
    listed = listed_product(market)
    public_buyer, paying_buyer = market.actor(Role.BUYER), market.actor(Role.BUYER)
    grant(market, listed, public_buyer, purpose="public_governance", plan="public")
    grant(market, listed, paying_buyer, purpose="industry", plan="standard")
    free = query(market, public_buyer, listed.slug, BY_REGION).json()
    paid = query(market, paying_buyer, listed.slug, BY_REGION).json()
    assert free["charge"]["charge_type"] == "free_public" and free["charge"]["amount_minor"] == 0
    assert paid["rows"] == free["rows"]
    assert paid["usage"]["bytes_scanned"] > 0
    # 150 fen per query plus 1000 fen per GB: a few KB scanned round to 0 fen, so exactly 150.
    assert paid["charge"] == {"amount_minor": 150, "currency": "CNY", "charge_type": "billable"}


def test_idempotent_retry_returns_the_original_response_and_records_once(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    first = query(market, buyer, listed.slug, BY_REGION, key="retry-1")
    again = query(market, buyer, listed.slug, BY_REGION, key="retry-1")
    assert again.status_code == 200 and again.json() == first.json()
    refused = query(market, buyer, listed.slug, "SELECT max(amount) FROM people", key="retry-2")
    refused_again = query(market, buyer, listed.slug, "SELECT max(amount) FROM people", key="retry-2")
    assert refused.status_code == refused_again.status_code == 422
    assert refused_again.json() == refused.json()
    conflict = query(market, buyer, listed.slug, "SELECT count(*) FROM people", key="retry-1")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert len(usage) == 2
    assert [u["charge_type"] for u in usage] == ["rejected", "billable"]


def test_quota_admits_exactly_n_accepted_queries_then_429(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=3)
    statuses = [query(market, buyer, listed.slug, BY_REGION).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert sorted(u["charge_type"] for u in usage) == ["free_public"] * 3 + ["rejected"] * 2
    assert {u["error_code"] for u in usage if u["charge_type"] == "rejected"} == {"quota_exhausted"}


def test_usage_is_paginated_newest_first(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    sqls = [f"SELECT region, count(*) FROM people WHERE month = {m} GROUP BY region" for m in (1, 2, 3)]
    for sql in sqls:
        query(market, buyer, listed.slug, sql)
    first = market.client.get("/v1/usage?limit=2", headers=buyer.headers).json()
    second = market.client.get(f"/v1/usage?limit=2&cursor={first['next_cursor']}", headers=buyer.headers).json()
    assert [u["sql"] for u in first["items"] + second["items"]] == sqls[::-1]
    assert second["next_cursor"] is None
    assert market.client.get("/v1/usage?cursor=bogus", headers=buyer.headers).status_code == 400
