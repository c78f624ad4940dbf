"""Per-product upper fee standards: inside the zone's cap, and plans checked against the stricter."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import PLANS, listed_product

STANDARD = {"max_per_query_minor": 150, "max_per_gb_minor": "1000", "max_monthly_fee_minor": 0}


def test_the_stricter_of_cap_and_standard_holds(market: Market) -> None:
    listed = listed_product(market)
    path = f"/v1/products/{listed.slug}/fee-standard"
    assert market.client.put(path, headers=listed.operator.headers, json=STANDARD).status_code == 403
    below_plan = market.client.put(
        path, headers=listed.regulator.headers, json={**STANDARD, "max_per_query_minor": 100}
    )
    assert below_plan.status_code == 422 and below_plan.json()["error"]["code"] == "plan_above_fee_standard"
    above_cap = market.client.put(
        path, headers=listed.regulator.headers, json={**STANDARD, "max_per_query_minor": 100_001}
    )
    assert above_cap.status_code == 422 and above_cap.json()["error"]["code"] == "fee_standard_above_cap"
    assert market.client.put(path, headers=listed.regulator.headers, json=STANDARD).status_code == 200
    plan = {**PLANS[1], "per_query_minor": 151}
    refused = market.client.put(
        f"/v1/products/{listed.slug}/plans/standard", headers=listed.operator.headers, json=plan
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "fee_above_cap"
    plan["per_query_minor"] = 150
    accepted = market.client.put(
        f"/v1/products/{listed.slug}/plans/standard", headers=listed.operator.headers, json=plan
    )
    assert accepted.status_code == 200, accepted.text
    fees = market.client.get(f"/v1/products/{listed.slug}/fees", headers=market.actor(Role.BUYER).headers).json()
    assert fees["zone_cap"]["per_query_minor"] == "100000" and fees["fee_standard"]["per_query_minor"] == "150"
    catalogue = market.client.get("/v1/products", headers=market.actor(Role.BUYER).headers).json()["items"]
    entry = next(p for p in catalogue if p["slug"] == listed.slug)
    assert entry["fee_limits"] == {"zone_cap": fees["zone_cap"], "fee_standard": fees["fee_standard"]}
    assert next(p for p in entry["plans"] if p["code"] == "standard")["per_query_minor"] == 150


def test_no_standard_on_a_draft(market: Market) -> None:
    from tests.factories import create_product

    operator, regulator = market.actor(Role.OPERATOR), market.actor(Role.REGULATOR)
    assert create_product(market, operator, "drafty").status_code == 201
    draft = market.client.put("/v1/products/drafty/fee-standard", headers=regulator.headers, json=STANDARD)
    assert draft.status_code == 409 and draft.json()["error"]["code"] == "fee_standard_not_in_review"
