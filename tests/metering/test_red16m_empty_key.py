"""Red team red16m (session 12): an empty Idempotency-Key is refused, not taken for no key.

`POST /v1/queries` treated `Idempotency-Key:` with an empty value (a template whose variable was not filled in;
an HTTP server strips a value of spaces to empty too) as if no key had been sent: a client that believed its retries
safe was answered 200 each time, recorded and charged twice. It is now a 422 naming the header, recorded and
charged nothing, and the same query with a real key is answered once.
"""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product
from tests.metering.helpers import BY_REGION, usage


def test_an_empty_idempotency_key_is_refused_and_charges_nothing(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    body = {"product": listed.slug, "sql": BY_REGION}
    for _ in range(2):  # a retry of the same request
        response = market.client.post("/v1/queries", headers={**buyer.headers, "Idempotency-Key": ""}, json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert "idempotency-key" in error["message"].lower()
    assert usage(market, buyer) == []
    keyed = [
        market.client.post("/v1/queries", headers={**buyer.headers, "Idempotency-Key": "k-1"}, json=body)
        for _ in range(2)
    ]
    assert [r.status_code for r in keyed] == [200, 200]
    assert keyed[0].json()["query_id"] == keyed[1].json()["query_id"]
    records = usage(market, buyer)
    assert len(records) == 1
    assert records[0]["amount_minor"] == keyed[0].json()["charge"]["amount_minor"] > 0
