"""The catalogue over HTTP: only listed products, search and filters, detail view, DCAT JSON-LD."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import create_product, listed_product, upload_version

FREE_ONLY = [{"code": "public", "title": "Public interest", "kind": "public_interest"}]


def _slugs(market: Market, headers: dict[str, str], query: str = "") -> list[str]:
    response = market.client.get(f"/v1/products{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [p["slug"] for p in response.json()["items"]]


def test_search_and_filters(market: Market) -> None:
    listed_product(market, "bus-trips")
    listed_product(market, "metro-free", plans=FREE_ONLY)
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "hidden-draft")
    upload_version(market, operator, "hidden-draft")
    buyer = market.actor(Role.BUYER).headers
    assert _slugs(market, buyer) == ["bus-trips", "metro-free"]
    assert _slugs(market, buyer, "?q=metro") == ["metro-free"]
    assert _slugs(market, buyer, "?q=PRODUCT%20bus") == ["bus-trips"]
    assert _slugs(market, buyer, "?pricing=paid") == ["bus-trips"]
    assert _slugs(market, buyer, "?pricing=free") == ["bus-trips", "metro-free"]
    assert _slugs(market, buyer, "?zone=finance") == []
    assert _slugs(market, buyer, "?region=CN") == ["bus-trips", "metro-free"]
    assert _slugs(market, buyer, "?region=CN-31") == []
    assert _slugs(market, buyer, "?scenario=anything") == []
    bad = market.client.get("/v1/products?pricing=cheap", headers=buyer)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert market.client.get("/v1/products/hidden-draft", headers=buyer).status_code == 404


def test_the_detail_view_has_schema_roles_documentation_and_a_quality_summary(market: Market) -> None:
    listed = listed_product(market)
    market.client.patch(
        f"/v1/products/{listed.slug}",
        headers=listed.operator.headers,
        json={"documentation": "# People trips\nMonthly trips per person."},
    )
    buyer = market.actor(Role.BUYER)
    detail = market.client.get(f"/v1/products/{listed.slug}", headers=buyer.headers).json()
    assert detail["documentation"].startswith("# People trips")
    assert detail["audit_clean"] is True
    table = detail["quality"]["tables"]["people"]
    assert table["rows"] == 180
    columns = {c["name"]: c for c in table["columns"]}
    assert "name" not in columns  # hidden columns are not described to buyers
    assert columns["region"]["range"] == ["east", "west"] and columns["region"]["distinct"] >= 3
    assert columns["amount"]["range"] is None  # a measure's min/max is a single row's value
    assert {c["role"] for c in detail["tables"][0]["columns"]} == {"privacy_unit", "hidden", "dimension", "measure"}
    assert detail["policy"]["min_group_size"] == 10


def test_dcat_jsonld_export_lists_only_listed_products(market: Market) -> None:
    listed = listed_product(market)
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "not-yet")
    buyer = market.actor(Role.BUYER)
    response = market.client.get("/v1/catalogue.jsonld", headers=buyer.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    body = response.json()
    assert body["@type"] == "dcat:Catalog" and "dcat" in body["@context"]
    (dataset,) = body["dcat:dataset"]
    assert dataset["dct:identifier"] == listed.slug and dataset["@type"] == "dcat:Dataset"
    assert dataset["dct:spatial"] == "CN-11" and dataset["dcat:theme"] == "transport"
    assert {o["dct:type"] for o in dataset["odrl:hasPolicy"]} == {"public_interest", "commercial"}
    assert dataset["dcat:distribution"][0]["dcat:accessURL"]["@id"].endswith("/v1/queries")
    # Public, as portals harvest it without a key: the same catalogue, no more for a caller with a key.
    anonymous = market.client.get("/v1/catalogue.jsonld")
    assert anonymous.status_code == 200 and anonymous.json() == body
