"""Authentication, roles, API keys and the error shape, over HTTP."""

from __future__ import annotations

from sqlalchemy import select

from market.accounts.models import ApiKey, Role
from tests.conftest import Market


def test_missing_and_invalid_keys_are_401_with_the_error_shape(market: Market) -> None:
    missing = market.client.get("/v1/products")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_credentials"
    wrong = market.client.get("/v1/products", headers={"Authorization": "Bearer mk_not-a-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    basic = market.client.get("/v1/products", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_wrong_role_is_403(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    response = market.client.post(
        "/v1/products",
        headers=buyer.headers,
        json={"slug": "x-1", "title": "x", "zone": "transport", "region": "CN-11"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_role"


def test_keys_are_stored_hashed_shown_once_and_revocable(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    org = market.client.post("/v1/orgs", headers=admin.headers, json={"name": "Acme Research", "kind": "buyer"}).json()
    user = market.client.post(
        "/v1/users",
        headers=admin.headers,
        json={"org_id": org["id"], "name": "Ana", "email": "ana@acme.example", "role": "buyer"},
    ).json()
    issued = market.client.post(f"/v1/users/{user['id']}/keys", headers=admin.headers, json={"label": "laptop"})
    assert issued.status_code == 201
    clear = issued.json()["key"]
    with market.database.transaction() as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.id == issued.json()["id"])).one()
        assert clear not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    headers = {"Authorization": f"Bearer {clear}"}
    me = market.client.get("/v1/me", headers=headers)
    assert me.json() == {
        "user_id": user["id"],
        "org_id": org["id"],
        "org_name": "Acme Research",
        "role": "buyer",
    }
    listed = market.client.get("/v1/keys", headers=headers).json()["items"]
    assert "key" not in listed[0] and listed[0]["prefix"] == clear[:10]
    assert market.client.delete(f"/v1/keys/{issued.json()['id']}", headers=headers).status_code == 200
    assert market.client.get("/v1/me", headers=headers).status_code == 401


def test_a_role_must_fit_its_organisation(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    org = market.client.post("/v1/orgs", headers=admin.headers, json={"name": "Buyer Co", "kind": "buyer"}).json()
    response = market.client.post(
        "/v1/users",
        headers=admin.headers,
        json={"org_id": org["id"], "name": "R", "email": "r@x.example", "role": "regulator"},
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "role_kind_mismatch"


def test_only_admins_manage_accounts_and_keys_of_other_orgs(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    other = market.actor(Role.BUYER)
    assert market.client.post("/v1/orgs", headers=buyer.headers, json={"name": "n", "kind": "buyer"}).status_code == 403
    their_key = market.client.get("/v1/keys", headers=other.headers).json()["items"][0]["id"]
    assert market.client.delete(f"/v1/keys/{their_key}", headers=buyer.headers).status_code == 404
    assert market.client.get("/v1/me", headers=other.headers).status_code == 200


def test_bad_input_and_unknown_routes_get_4xx_json_errors(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    not_json = market.client.post(
        "/v1/queries", headers={**buyer.headers, "content-type": "application/json"}, content=b"{not json"
    )
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_request"
    missing_field = market.client.post("/v1/queries", headers=buyer.headers, json={"sql": "SELECT 1"})
    assert missing_field.status_code == 422 and "product" in missing_field.json()["error"]["message"]
    unknown = market.client.get("/v1/nothing-here", headers=buyer.headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert market.client.get("/healthz").json() == {"status": "ok"}


def test_a_second_user_with_the_same_email_is_a_conflict_that_says_so(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    org = market.client.post("/v1/orgs", headers=admin.headers, json={"name": "Dup Co", "kind": "buyer"}).json()
    body = {"org_id": org["id"], "name": "A", "email": "same@x.example", "role": "buyer"}
    assert market.client.post("/v1/users", headers=admin.headers, json=body).status_code == 201
    again = market.client.post("/v1/users", headers=admin.headers, json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_user"
    assert "same@x.example" in again.json()["error"]["message"]
