"""Data resources over HTTP: registration by sources, review by the regulator, lineage on products."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.factories import PLANS, ensure_authorised

RESOURCE = {
    "title": "Transit card transactions",
    "description": "Every tap of the municipal transit card.",
    "zone": "transport",
    "region": "CN-11",
    "classification": "important",
    "catalogue": {"fields": ["card_id", "station", "time", "fare"], "update_frequency": "daily"},
}


def _registered(market: Market, regulator: Actor, source: Actor, **changes) -> dict:
    created = market.client.post("/v1/resources", headers=source.headers, json={**RESOURCE, **changes})
    assert created.status_code == 201, created.text
    reviewed = market.client.post(
        f"/v1/resources/{created.json()['id']}/review", headers=regulator.headers, json={"decision": "register"}
    )
    assert reviewed.status_code == 200, reviewed.text
    return reviewed.json()


def test_a_source_registers_and_the_regulator_returns_then_registers(market: Market) -> None:
    source = market.actor(Role.SOURCE)
    regulator = market.actor(Role.REGULATOR)
    operator = market.actor(Role.OPERATOR)
    created = market.client.post("/v1/resources", headers=source.headers, json=RESOURCE).json()
    assert created["status"] == "pending" and created["registration_code"] is None
    assert market.client.get("/v1/resources", headers=operator.headers).json()["items"] == []
    by_operator = market.client.post("/v1/resources", headers=operator.headers, json=RESOURCE)
    assert by_operator.status_code == 403
    self_review = market.client.post(
        f"/v1/resources/{created['id']}/review", headers=source.headers, json={"decision": "register"}
    )
    assert self_review.status_code == 403

    returned = market.client.post(
        f"/v1/resources/{created['id']}/review",
        headers=regulator.headers,
        json={"decision": "return", "comment": "Name the legal basis in the catalogue."},
    ).json()
    assert returned["status"] == "returned" and returned["review_comment"].startswith("Name the legal basis")
    revised = market.client.put(
        f"/v1/resources/{created['id']}",
        headers=source.headers,
        json={**RESOURCE, "catalogue": {**RESOURCE["catalogue"], "legal_basis": "Municipal regulation 12"}},
    ).json()
    assert revised["status"] == "pending"
    registered = market.client.post(
        f"/v1/resources/{created['id']}/review",
        headers=regulator.headers,
        json={"decision": "register", "registration_code": "BJ-TR-2026-0001"},
    ).json()
    assert registered["status"] == "registered" and registered["registration_code"] == "BJ-TR-2026-0001"
    again = market.client.post(
        f"/v1/resources/{created['id']}/review", headers=regulator.headers, json={"decision": "register"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "resource_not_pending"
    assert [r["id"] for r in market.client.get("/v1/resources", headers=operator.headers).json()["items"]] == [
        created["id"]
    ]
    other_source = market.actor(Role.SOURCE)
    assert market.client.get("/v1/resources", headers=other_source.headers).json()["items"] == []
    bad = market.client.post("/v1/resources", headers=source.headers, json={**RESOURCE, "classification": "secret"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_products_record_lineage_from_registered_resources_only(market: Market) -> None:
    source = market.actor(Role.SOURCE)
    regulator = market.actor(Role.REGULATOR)
    operator = market.actor(Role.OPERATOR)
    ensure_authorised(market, operator)
    registered = _registered(market, regulator, source)
    core = _registered(market, regulator, source, classification="core")
    pending = market.client.post("/v1/resources", headers=source.headers, json=RESOURCE).json()

    def create(slug: str, resources: list[str]):
        body = {"slug": slug, "title": slug, "zone": "transport", "region": "CN-11", "plans": PLANS}
        return market.client.post("/v1/products", headers=operator.headers, json={**body, "resources": resources})

    for reference, code in [
        (pending["id"], "resource_not_registered"),
        (core["id"], "resource_core"),
        ("nope", "resource_not_found"),
    ]:
        response = create(f"bad-{code.replace('_', '-')}", [reference])
        assert response.status_code == 422 and response.json()["error"]["code"] == code
    product = create("with-lineage", [registered["registration_code"]])
    assert product.status_code == 201, product.text
    assert product.json()["resources"] == [
        {"id": registered["id"], "registration_code": registered["registration_code"], "title": RESOURCE["title"]}
    ]


def test_registration_codes_are_unique(market: Market) -> None:
    source = market.actor(Role.SOURCE)
    regulator = market.actor(Role.REGULATOR)
    first = market.client.post("/v1/resources", headers=source.headers, json=RESOURCE).json()
    second = market.client.post("/v1/resources", headers=source.headers, json=RESOURCE).json()
    body = {"decision": "register", "registration_code": "BJ-TR-1"}
    assert (
        market.client.post(f"/v1/resources/{first['id']}/review", headers=regulator.headers, json=body).status_code
        == 200
    )
    clash = market.client.post(f"/v1/resources/{second['id']}/review", headers=regulator.headers, json=body)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "duplicate_registration_code"
    assert "BJ-TR-1" in clash.json()["error"]["message"]
