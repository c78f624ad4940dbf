"""Metering over HTTP: what a usage record holds, trials, tiers, the cap, quotas on rows and bytes."""

from __future__ import annotations

from sqlalchemy import select

from market.accounts.models import Role
from metering.models import UsageRecord
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, commercial_plan, usage

ROWS = 180  # the people table: 60 people x 3 months


def test_a_usage_record_holds_agreement_version_purpose_quantities_charge_and_sql(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="industry", plan="standard")
    sql = "SELECT category, count(*) AS n FROM people GROUP BY category"
    body = query(market, buyer, listed.slug, sql).json()
    assert body["suppressed_groups"] == 2
    with market.database.transaction() as session:
        record = session.scalars(select(UsageRecord).where(UsageRecord.id == body["query_id"])).one()
        assert record.agreement_id == body["agreement_id"]
        assert record.purpose == "industry" and record.product_version_id
        assert record.sql == sql and "people" in record.sql_run and record.sql_run != sql
        assert (record.rows_scanned, record.result_rows, record.suppressed_groups) == (ROWS, 1, 2)
        assert record.bytes_scanned == body["usage"]["bytes_scanned"] > 0 and record.cpu_ms >= 0
        assert (record.charge_type, record.amount_minor, record.currency) == ("billable", 150, "CNY")
        assert record.result_columns == ["category", "n"]
        assert record.chain_seq == 1 and len(record.record_hash) == 64


def test_trial_queries_are_free_then_billable(market: Market) -> None:
    listed = listed_product(market, plans=commercial_plan(per_query_minor=300, trial_queries=2))
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="paid")
    charges = [query(market, buyer, listed.slug, BY_REGION).json()["charge"] for _ in range(3)]
    assert [(c["charge_type"], c["amount_minor"]) for c in charges] == [("trial", 0), ("trial", 0), ("billable", 300)]


def test_graduated_tiers_price_each_query_by_its_tier(market: Market) -> None:
    tiers = [
        {"up_to": 2, "per_query_minor": 500},
        {"up_to": 3, "per_query_minor": 200},
        {"per_query_minor": 100},
    ]
    listed = listed_product(market, plans=commercial_plan(tiers=tiers, monthly_fee_minor=10_000))
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="paid")
    amounts = [query(market, buyer, listed.slug, BY_REGION).json()["charge"]["amount_minor"] for _ in range(5)]
    assert amounts == [500, 500, 200, 100, 100]
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]
    assert agreement["plan"]["tiers"][0] == {"up_to": 2, "per_query_minor": 500, "per_gb_minor": "0"}
    assert agreement["plan"]["monthly_fee_minor"] == 10_000  # for billing's monthly access fee


def test_tiers_must_increase_and_end_open(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    for tiers in (
        [{"up_to": 5, "per_query_minor": 1}],
        [{"up_to": 5, "per_query_minor": 1}, {"up_to": 3, "per_query_minor": 1}, {"per_query_minor": 1}],
        [{"per_query_minor": 1}, {"per_query_minor": 2}],
    ):
        response = market.client.post(
            "/v1/products",
            headers=operator.headers,
            json={
                "slug": "bad-tiers",
                "title": "t",
                "zone": "transport",
                "region": "CN-11",
                "plans": commercial_plan(tiers=tiers),
            },
        )
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", response.text


def test_after_the_monthly_cap_queries_are_served_as_cap_reached(market: Market) -> None:
    listed = listed_product(market, plans=commercial_plan(per_query_minor=400, monthly_cap_minor=1000))
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="paid")
    responses = [query(market, buyer, listed.slug, BY_REGION) for _ in range(4)]
    assert all(r.status_code == 200 and r.json()["rows"] for r in responses)
    assert [(r.json()["charge"]["charge_type"], r.json()["charge"]["amount_minor"]) for r in responses] == [
        ("billable", 400),
        ("billable", 400),
        ("billable", 200),
        ("cap_reached", 0),
    ]
    records = usage(market, buyer)
    assert sum(r["amount_minor"] for r in records) == 1000
    assert records[0]["charge_type"] == "cap_reached"


def test_a_row_quota_refuses_the_query_that_would_overspend_it(market: Market) -> None:
    listed = listed_product(market, plans=[{"code": "public", "title": "Free", "kind": "public_interest"}])
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_governance", plan="public", monthly_row_quota=ROWS * 2 + 10)
    statuses = [query(market, buyer, listed.slug, BY_REGION) for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 429]
    error = statuses[2].json()["error"]
    assert error["code"] == "row_quota_exhausted" and str(ROWS) in error["message"]
    records = usage(market, buyer)
    assert [(r["charge_type"], r["amount_minor"]) for r in records] == [
        ("rejected", 0),
        ("free_public", 0),
        ("free_public", 0),
    ]
    assert records[0]["rows_scanned"] == ROWS  # measured, but refused and never charged


def test_a_byte_quota_from_the_plan_applies(market: Market) -> None:
    probe = listed_product(market, slug="probe")
    measurer = market.actor(Role.BUYER)
    grant(market, probe, measurer, purpose="commercial", plan="standard")
    per_query = query(market, measurer, probe.slug, BY_REGION).json()["usage"]["bytes_scanned"]
    assert per_query > 0

    plans = [{"code": "public", "title": "Free", "kind": "public_interest", "monthly_byte_quota": per_query * 3 // 2}]
    listed = listed_product(market, plans=plans)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    refused = query(market, buyer, listed.slug, BY_REGION)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "byte_quota_exhausted"


def test_refused_queries_are_recorded_as_rejected_with_zero(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    refused = query(market, buyer, listed.slug, "SELECT person_id FROM people")
    assert 400 <= refused.status_code < 500
    query_id = refused.json()["error"]["query_id"]
    record = usage(market, buyer)[0]
    assert record["id"] == query_id
    assert (record["charge_type"], record["amount_minor"], record["error_code"]) == (
        "rejected",
        0,
        refused.json()["error"]["code"],
    )
