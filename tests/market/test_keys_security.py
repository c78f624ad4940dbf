"""API keys as credentials: revoked, unknown and missing keys are refused on every /v1 route; keys are
stored hashed and never shown again; an organisation is off-boarded by revoking its keys."""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import select

from market.accounts.models import ApiKey, Role
from market.app import ROUTERS
from tests.conftest import Market

UNAUTHENTICATED_BY_DESIGN = {"/v1/stripe/webhook", "/v1/catalogue.jsonld"}
"""Stripe cannot hold an API key: the webhook is checked by its signature (tests/billing). Portals harvest the
DCAT catalogue without one: it holds only the public catalogue (tests/products/test_catalogue_http.py)."""


def _v1_routes() -> list[tuple[str, str]]:
    routes = []
    for router in ROUTERS:
        for route in router.routes:
            if route.path.startswith("/v1") and route.path not in UNAUTHENTICATED_BY_DESIGN:
                routes.extend((method, re.sub(r"\{[^}]+\}", "x", route.path)) for method in sorted(route.methods))
    return routes


def test_revoked_unknown_and_missing_keys_are_refused_on_every_route(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    key_id = market.client.get("/v1/keys", headers=buyer.headers).json()["items"][0]["id"]
    assert market.client.delete(f"/v1/keys/{key_id}", headers=buyer.headers).status_code == 200
    callers = {
        "invalid_api_key": [buyer.headers, {"Authorization": "Bearer mk_never-issued"}],
        "missing_credentials": [{}, {"Authorization": "Basic abc"}],
    }
    routes = _v1_routes()
    assert len(routes) > 60
    wrong = []
    for code, headers_list in callers.items():
        for headers in headers_list:
            for method, path in routes:
                response = market.client.request(method, path, headers=headers)
                if response.status_code != 401 or response.json()["error"]["code"] != code:
                    wrong.append(f"{method} {path} {headers}: {response.status_code} {response.text[:80]}")
    assert not wrong, "\n".join(wrong)


def test_keys_are_hashed_at_rest_and_never_listed(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    buyer = market.actor(Role.BUYER)
    issued = market.client.post(f"/v1/users/{buyer.principal.user_id}/keys", headers=admin.headers, json={})
    assert issued.status_code == 201
    clear = issued.json()["key"]
    with market.database.transaction() as session:
        rows = session.scalars(select(ApiKey)).all()
        stored = next(k for k in rows if k.id == issued.json()["id"])
        assert stored.key_hash == hashlib.sha256(clear.encode()).hexdigest()
        for row in rows:
            assert clear not in (row.key_hash, row.prefix, row.label)
    for who in (buyer.headers, {"Authorization": f"Bearer {clear}"}, admin.headers):
        listed = market.client.get("/v1/keys", headers=who)
        assert listed.status_code == 200
        assert clear not in listed.text and stored.key_hash not in listed.text
        assert all(
            set(k) == {"id", "user_id", "label", "prefix", "created_at", "revoked_at"} for k in listed.json()["items"]
        )


def test_keys_of_another_organisation_are_out_of_reach(market: Market) -> None:
    """A user lists and revokes only its own organisation's keys; the platform admin any."""
    buyer, other, admin = market.actor(Role.BUYER), market.actor(Role.BUYER), market.actor(Role.ADMIN)
    mine = {k["user_id"] for k in market.client.get("/v1/keys", headers=buyer.headers).json()["items"]}
    assert mine == {buyer.principal.user_id}
    their_key = market.client.get("/v1/keys", headers=other.headers).json()["items"][0]["id"]
    denied = market.client.delete(f"/v1/keys/{their_key}", headers=buyer.headers)
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "api_key_not_found"
    assert market.client.get("/v1/me", headers=other.headers).status_code == 200
    issued = market.client.post(f"/v1/users/{other.principal.user_id}/keys", headers=buyer.headers, json={})
    assert issued.status_code == 403
    assert market.client.delete(f"/v1/keys/{their_key}", headers=admin.headers).status_code == 200
    assert market.client.get("/v1/me", headers=other.headers).status_code == 401


def test_an_offboarded_organisation_cannot_act(market: Market) -> None:
    """Organisations are never deleted (invoices and usage refer to them); off-boarding revokes every
    key of the organisation, after which none of its users can act."""
    admin = market.actor(Role.ADMIN)
    first = market.actor(Role.BUYER, org="Leaving Co")
    second = market.actor(Role.BUYER, org="Leaving Co")
    keys = market.client.get("/v1/keys", headers=first.headers).json()["items"]
    assert len(keys) == 2
    for key in keys:
        assert market.client.delete(f"/v1/keys/{key['id']}", headers=admin.headers).status_code == 200
    for actor in (first, second):
        response = market.client.get("/v1/usage", headers=actor.headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
