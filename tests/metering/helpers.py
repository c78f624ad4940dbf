"""Small HTTP helpers shared by the metering tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import Actor, Market

BY_REGION = "SELECT region, count(*) AS n, sum(amount) AS total FROM people GROUP BY region ORDER BY region"


def ask(market: Market, buyer: Actor, slug: str, *, plan: str, purpose: str, scenario: str = "analysis") -> Any:
    return market.client.post(
        "/v1/access-requests",
        headers=buyer.headers,
        json={"product": slug, "plan": plan, "purpose": purpose, "scenario": scenario, "justification": "why"},
    )


def decide(market: Market, reviewer: Actor, request_id: str, **body: Any) -> Any:
    return market.client.post(f"/v1/access-requests/{request_id}/decision", headers=reviewer.headers, json=body)


def agreement_of(market: Market, buyer: Actor) -> dict[str, Any]:
    agreements = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"]
    assert len(agreements) == 1, agreements
    return agreements[0]


def usage(market: Market, actor: Actor, **params: Any) -> list[dict[str, Any]]:
    response = market.client.get("/v1/usage", headers=actor.headers, params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def commercial_plan(**terms: Any) -> list[dict[str, Any]]:
    """A product's plans: the free public one and one commercial plan with `terms`."""
    return [
        {"code": "public", "title": "Public interest", "kind": "public_interest", "monthly_query_quota": 1000},
        {"code": "paid", "title": "Commercial", "kind": "commercial", **terms},
    ]
