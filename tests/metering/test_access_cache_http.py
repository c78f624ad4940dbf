"""The short-lived caches of the query path (market.access_cache, sandbox.cache) never outlive a revocation,
and a cached answer is metered, audited and charged like one that ran."""

from __future__ import annotations

from sqlalchemy import text

from market.accounts.models import Role
from market.clock import utcnow
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of, usage


def _key_id(market: Market, actor_headers: dict[str, str]) -> str:
    keys = market.client.get("/v1/keys", headers=actor_headers).json()["items"]
    assert len(keys) == 1, keys
    return str(keys[0]["id"])


def test_a_revoked_key_is_refused_at_the_next_request(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for _ in range(2):  # the second request is served from the key cache
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    key_id = _key_id(market, buyer.headers)
    revoked = market.client.delete(f"/v1/keys/{key_id}", headers=buyer.headers)
    assert revoked.status_code == 200, revoked.text
    refused = query(market, buyer, listed.slug, BY_REGION)
    assert refused.status_code == 401, refused.text


def test_a_revoked_agreement_is_refused_at_the_next_query(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for _ in range(2):
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    agreement = agreement_of(market, buyer)
    revoked = market.client.post(
        f"/v1/agreements/{agreement['id']}/revoke", headers=listed.operator.headers, json={"reason": "breach"}
    )
    assert revoked.status_code == 200, revoked.text
    refused = query(market, buyer, listed.slug, BY_REGION)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "agreement_revoked", refused.text


def test_a_change_made_by_another_process_empties_the_caches(market: Market) -> None:
    """Another API process revokes with its own session: here only the generation file moves."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    with market.database.engine.begin() as connection:  # no ORM session: no listener sees it
        connection.execute(text("UPDATE api_keys SET revoked_at = :now"), {"now": utcnow()})
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200  # still cached here
    run_dir = market.settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "access-generation").open("ab") as generation:
        generation.write(b".")  # what the other process's commit does
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 401


def test_a_cached_answer_is_metered_and_charged_like_the_first(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    first = query(market, buyer, listed.slug, BY_REGION)
    second = query(market, buyer, listed.slug, BY_REGION)
    assert first.status_code == second.status_code == 200
    one, two = first.json(), second.json()
    assert one["rows"] == two["rows"] and one["columns"] == two["columns"]
    assert one["charge"] == two["charge"] and one["charge"]["amount_minor"] > 0
    assert {k: v for k, v in one["usage"].items() if k != "cpu_ms"} == {
        k: v for k, v in two["usage"].items() if k != "cpu_ms"
    }
    assert one["query_id"] != two["query_id"]
    records = usage(market, buyer)
    assert len(records) == 2
    assert {r["amount_minor"] for r in records} == {one["charge"]["amount_minor"]}
