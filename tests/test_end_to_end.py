"""The thin slice of the whole product, over HTTP: the demo marketplace from listing to metered queries."""

from __future__ import annotations

import pytest

from market.accounts.models import Role
from market.clock import utcnow
from market.demo import build_demo
from tests.conftest import DemoMarket, Market

FLIGHTS = "nyc-flights-2013"
BY_ORIGIN = (
    "SELECT origin, count(*) AS flights, avg(dep_delay) AS avg_delay FROM flights GROUP BY origin ORDER BY origin"
)


@pytest.fixture
def market(demo_market: DemoMarket) -> Market:
    """Each test on its own pristine copy of the demo marketplace (built once per session)."""
    return demo_market


@pytest.fixture
def demo(demo_market: DemoMarket) -> dict[str, dict[str, str]]:
    return {name: demo_market.headers(name) for name in demo_market.keys}


def test_demo_product_is_in_the_catalogue_with_its_policy_and_plans(market: Market, demo) -> None:
    response = market.client.get("/v1/products", headers=demo["buyer_commercial"])
    assert response.status_code == 200
    product = next(p for p in response.json()["items"] if p["slug"] == FLIGHTS)
    assert (product["zone"], product["region"]) == ("transport", "US-NY")
    flights = product["tables"][0]
    assert flights["name"] == "flights" and flights["row_count"] == 336_776
    roles = {c["name"]: c["role"] for c in flights["columns"]}
    assert roles["tailnum"] == "privacy_unit"
    assert roles["flight"] == roles["time_hour"] == "hidden"
    assert {roles[c] for c in ["year", "month", "day", "hour", "origin", "dest", "carrier"]} == {"dimension"}
    assert {roles[c] for c in ["dep_delay", "arr_delay", "air_time", "distance"]} == {"measure"}
    assert "dep_time" not in roles  # columns outside the policy are dropped at ingestion
    assert product["policy"]["min_group_size"] == 10
    assert {p["kind"] for p in product["plans"]} == {"public_interest", "commercial"}


def test_public_interest_query_is_free_and_commercial_query_is_billable(market: Market, demo) -> None:
    public = market.client.post(
        "/v1/queries", headers=demo["buyer_public"], json={"product": FLIGHTS, "sql": BY_ORIGIN}
    )
    assert public.status_code == 200, public.text
    body = public.json()
    assert body["columns"] == ["origin", "flights", "avg_delay"]
    assert [row[0] for row in body["rows"]] == ["EWR", "JFK", "LGA"]
    assert sum(row[1] for row in body["rows"]) == 336_776
    assert body["charge"] == {"amount_minor": 0, "currency": "CNY", "charge_type": "free_public"}

    commercial = market.client.post(
        "/v1/queries", headers=demo["buyer_commercial"], json={"product": FLIGHTS, "sql": BY_ORIGIN}
    )
    assert commercial.status_code == 200
    charge = commercial.json()["charge"]
    assert charge["charge_type"] == "billable" and charge["amount_minor"] > 0 and charge["currency"] == "CNY"
    assert commercial.json()["rows"] == body["rows"]


def test_select_star_is_refused_recorded_as_rejected_and_not_charged(market: Market, demo) -> None:
    refused = market.client.post(
        "/v1/queries",
        headers=demo["buyer_commercial"],
        json={"product": FLIGHTS, "sql": "SELECT * FROM flights"},
    )
    assert 400 <= refused.status_code < 500
    assert refused.json()["error"]["code"] == "not_aggregated"
    usage = market.client.get("/v1/usage", headers=demo["buyer_commercial"]).json()["items"]
    assert usage[0]["sql"] == "SELECT * FROM flights"
    assert (usage[0]["charge_type"], usage[0]["amount_minor"]) == ("rejected", 0)


def test_small_groups_are_suppressed_and_the_rule_stated(market: Market, demo) -> None:
    sql = "SELECT dest, count(*) AS n FROM flights WHERE month = 1 AND day = 1 GROUP BY dest"
    response = market.client.post("/v1/queries", headers=demo["buyer_public"], json={"product": FLIGHTS, "sql": sql})
    assert response.status_code == 200
    body = response.json()
    # The answer states the rule, never how many groups it left out (that count depends on hidden rows).
    assert "suppressed_groups" not in body and "suppressed_groups" not in body["usage"]
    assert body["suppression"]["min_group_size"] == 10 and "not reported" in body["suppression"]["rule"]
    assert all(n >= 10 for _, n in body["rows"])  # at least 10 aircraft means at least 10 flights


def test_a_buyer_without_agreement_gets_403(market: Market, demo) -> None:
    stranger = market.actor(Role.BUYER)
    response = market.client.post("/v1/queries", headers=stranger.headers, json={"product": FLIGHTS, "sql": BY_ORIGIN})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_agreement"


def test_usage_lists_only_the_callers_own_records_newest_first(market: Market, demo) -> None:
    for sql in (BY_ORIGIN, "SELECT carrier, sum(distance) FROM flights GROUP BY carrier"):
        market.client.post("/v1/queries", headers=demo["buyer_commercial"], json={"product": FLIGHTS, "sql": sql})
    market.client.post("/v1/queries", headers=demo["buyer_public"], json={"product": FLIGHTS, "sql": BY_ORIGIN})
    mine = market.client.get("/v1/usage", headers=demo["buyer_commercial"]).json()["items"]
    assert [r["sql"] for r in mine][:2] == [
        "SELECT carrier, sum(distance) FROM flights GROUP BY carrier",
        BY_ORIGIN,
    ]
    assert {r["purpose"] for r in mine} == {"commercial"}
    theirs = market.client.get("/v1/usage", headers=demo["buyer_public"]).json()["items"]
    assert len(theirs) == 1 and theirs[0]["charge_type"] == "free_public"


def test_demo_is_safe_to_run_twice(market: Market, demo) -> None:
    again = build_demo(market.database, market.settings)
    assert set(again) == {
        "regulator",
        "operator",
        "source",
        "buyer_public",
        "buyer_commercial",
        "finance",
        "admin",
    }
    listed = market.client.get("/v1/products", headers={"Authorization": f"Bearer {again['buyer_public']}"}).json()[
        "items"
    ]
    assert [p["slug"] for p in listed].count(FLIGHTS) == 1
    agreements = market.client.get(
        "/v1/agreements", headers={"Authorization": f"Bearer {again['buyer_public']}"}
    ).json()["items"]
    assert len(agreements) == 3  # one per demo product: nyc-flights-2013, nyc-flights-2013-dp, bj-sme-tax-credits-2025
    # keys from the first run were replaced, not left valid
    assert market.client.get("/v1/me", headers=demo["buyer_public"]).status_code == 401
    # the operator's allowed revenue for this year is recorded once, derived: 500,000.00 CNY
    figures = market.client.get("/v1/allowed-revenue", headers={"Authorization": f"Bearer {again['operator']}"})
    assert [(f["year"], f["allowed_minor"]) for f in figures.json()["items"]] == [(utcnow().year, 50_000_000)]
