"""Authorisations over HTTP: scope, validity, fee caps, suspension and revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import PLANS, authorise, grant, listed_product, query, upload_version

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"


def _product(slug: str, zone: str = "transport", region: str = "CN-11", plans=None, **extra) -> dict:
    return {
        "slug": slug,
        "title": slug,
        "zone": zone,
        "region": region,
        "plans": PLANS if plans is None else plans,
        **extra,
    }


def test_an_operator_without_an_authorisation_cannot_create_products(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    response = market.client.post("/v1/products", headers=operator.headers, json=_product("nope"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_authorisation"


def test_products_outside_the_scope_are_refused(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert (
        authorise(market, operator, zones=("transport",), regions=("CN-11",), scenarios=("route-planning",)).status_code
        == 201
    )
    for body, code in [
        (_product("wrong-zone", zone="healthcare"), "outside_authorisation"),
        (_product("wrong-region", region="CN-31"), "outside_authorisation"),
        (_product("wrong-scenario", scenarios=["credit-scoring"]), "scenario_outside_authorisation"),
    ]:
        response = market.client.post("/v1/products", headers=operator.headers, json=body)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == code
        assert body["zone"] in response.json()["error"]["message"] or code.startswith("scenario")
    sub_region = market.client.post(
        "/v1/products", headers=operator.headers, json=_product("district", region="CN-11-05")
    )
    assert sub_region.status_code == 201, sub_region.text


def test_an_expired_authorisation_allows_nothing(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    past = datetime.now(UTC) - timedelta(days=30)
    expired = market.client.post(
        "/v1/authorisations",
        headers=regulator.headers,
        json={
            "operator": operator.principal.org_id,
            "zones": ["transport"],
            "regions": ["CN-11"],
            "valid_from": (past - timedelta(days=365)).isoformat(),
            "valid_until": past.isoformat(),
            "fee_caps": [
                {"zone": "transport", "max_per_query_minor": 100, "max_per_gb_minor": "0", "max_monthly_fee_minor": 0}
            ],
        },
    )
    assert expired.status_code == 201 and expired.json()["in_force"] is False
    response = market.client.post("/v1/products", headers=operator.headers, json=_product("late"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "authorisation_expired"


def test_plans_above_the_fee_cap_are_refused_on_create_and_on_change(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    authorise(market, operator, max_per_query_minor=100, max_per_gb_minor="500", max_monthly_fee_minor=0)
    dear = [{"code": "dear", "title": "Dear", "kind": "commercial", "per_query_minor": 101}]
    response = market.client.post("/v1/products", headers=operator.headers, json=_product("dear", plans=dear))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "fee_above_cap" and "per_query_minor" in error["message"] and "100" in error["message"]
    at_cap = [{"code": "std", "title": "At cap", "kind": "commercial", "per_query_minor": 100, "per_gb_minor": "500"}]
    assert (
        market.client.post("/v1/products", headers=operator.headers, json=_product("fair", plans=at_cap)).status_code
        == 201
    )
    monthly = {"code": "std", "title": "Monthly", "kind": "commercial", "monthly_fee_minor": 1}
    changed = market.client.put("/v1/products/fair/plans/std", headers=operator.headers, json=monthly)
    assert changed.status_code == 422 and changed.json()["error"]["code"] == "fee_above_cap"
    cheaper = {"code": "std", "title": "Cheaper", "kind": "commercial", "per_query_minor": 50}
    changed = market.client.put("/v1/products/fair/plans/std", headers=operator.headers, json=cheaper)
    assert changed.status_code == 200 and changed.json()["per_query_minor"] == 50
    per_gb = {"code": "bulk", "title": "Bulk", "kind": "commercial", "per_gb_minor": "500.000001"}
    assert market.client.put("/v1/products/fair/plans/bulk", headers=operator.headers, json=per_gb).status_code == 422


def test_only_the_regulator_grants_and_operators_see_only_their_own(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    rival = market.actor(Role.OPERATOR)
    self_grant = authorise(market, operator, regulator=operator)
    assert self_grant.status_code == 403
    assert authorise(market, operator).status_code == 201
    assert len(market.client.get("/v1/authorisations", headers=operator.headers).json()["items"]) == 1
    assert market.client.get("/v1/authorisations", headers=rival.headers).json()["items"] == []
    buyer = market.actor(Role.BUYER)
    assert market.client.get("/v1/authorisations", headers=buyer.headers).status_code == 403
    no_cap = authorise(market, operator, zones=("transport", "finance"))
    assert no_cap.status_code == 201
    bad = market.client.post(
        "/v1/authorisations",
        headers=market.actor(Role.REGULATOR).headers,
        json={
            "operator": operator.principal.org_id,
            "zones": ["finance"],
            "regions": ["CN-11"],
            "valid_until": "2030-01-01T00:00:00Z",
            "fee_caps": [],
        },
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_revoking_delists_products_and_stops_serving_agreements(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, SQL).status_code == 200
    grants = market.client.get("/v1/authorisations", headers=listed.regulator.headers).json()["items"]
    grant_id = next(g["id"] for g in grants if g["operator"] == listed.operator.principal.org_id)

    suspended = market.client.post(
        f"/v1/authorisations/{grant_id}/suspend", headers=listed.regulator.headers, json={"reason": "Audit pending."}
    )
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    refused = query(market, buyer, listed.slug, SQL)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "authorisation_inactive"
    assert all(
        p["slug"] != listed.slug for p in market.client.get("/v1/products", headers=buyer.headers).json()["items"]
    )
    events = market.client.get(f"/v1/products/{listed.slug}/events", headers=listed.operator.headers).json()["items"]
    assert (events[-1]["from_status"], events[-1]["to_status"]) == ("listed", "delisted")
    assert "Audit pending." in events[-1]["reason"]
    assert events[-1]["actor_user_id"] == listed.regulator.principal.user_id

    # Reinstated: the product needs a new review before buyers see it again.
    market.client.post(
        f"/v1/authorisations/{grant_id}/reinstate", headers=listed.regulator.headers, json={"reason": "ok"}
    )
    assert query(market, buyer, listed.slug, SQL).json()["error"]["code"] == "product_delisted"
    assert market.client.post(f"/v1/products/{listed.slug}/submit", headers=listed.operator.headers).status_code == 200

    revoked = market.client.post(
        f"/v1/authorisations/{grant_id}/revoke", headers=listed.regulator.headers, json={"reason": "Breach."}
    )
    assert revoked.json()["status"] == "revoked"
    again = market.client.post(
        f"/v1/authorisations/{grant_id}/reinstate", headers=listed.regulator.headers, json={"reason": "no"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "authorisation_transition"
    approve = market.client.post(
        f"/v1/products/{listed.slug}/review", headers=listed.regulator.headers, json={"decision": "approve"}
    )
    assert approve.status_code == 409 and approve.json()["error"]["code"] == "review_outside_authorisation"
    assert query(market, buyer, listed.slug, SQL).json()["error"]["code"] == "authorisation_inactive"
    history = market.client.get(f"/v1/authorisations/{grant_id}/events", headers=listed.operator.headers).json()[
        "items"
    ]
    assert [e["to_status"] for e in history] == ["active", "suspended", "active", "revoked"]


def test_submitting_outside_the_scope_is_refused_after_a_scope_loss(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    granted = authorise(market, operator, regulator=regulator).json()
    market.client.post("/v1/products", headers=operator.headers, json=_product("later"))
    assert upload_version(market, operator, "later").status_code == 201
    market.client.post(f"/v1/authorisations/{granted['id']}/suspend", headers=regulator.headers, json={"reason": "x"})
    response = market.client.post("/v1/products/later/submit", headers=operator.headers)
    assert response.status_code == 403 and response.json()["error"]["code"] == "no_authorisation"
