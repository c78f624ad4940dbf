"""A query naming a product by a slug longer than any slug can be is 422, and its answer does not echo it.

Red team red16m's note: `QueryIn.product` had no length limit, so a 5 MB slug was looked up and echoed whole in the
404's message. Slugs are at most 100 characters (products.schemas), so a longer one is bad input.
"""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product
from tests.metering.helpers import BY_REGION, usage


def test_an_overlong_product_slug_is_refused_without_echo(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    slug = "x" * 100_000
    response = market.client.post("/v1/queries", headers=buyer.headers, json={"product": slug, "sql": BY_REGION})
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"]["code"] == "invalid_request"
    assert len(response.text) < 2_000
    assert usage(market, buyer) == []
