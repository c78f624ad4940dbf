"""The demo's second operator and person-level product, built through the pipeline, over HTTP."""

from __future__ import annotations

from market.demo import build_demo
from market.demo_credit import CREDIT_SLUG
from tests.conftest import DemoMarket


def test_the_person_level_demo_product_is_desensitised_audited_and_queryable(demo_market: DemoMarket) -> None:
    market, keys = demo_market, demo_market.keys
    buyer = {"Authorization": f"Bearer {keys['buyer_commercial']}"}
    regulator = {"Authorization": f"Bearer {keys['regulator']}"}
    products = market.client.get("/v1/products?zone=finance", headers=buyer).json()["items"]
    assert [p["slug"] for p in products] == [CREDIT_SLUG]
    detail = market.client.get(f"/v1/products/{CREDIT_SLUG}", headers=buyer).json()
    assert detail["audit_clean"] is True and detail["resources"][0]["registration_code"] == "CN-11-FIN-2025-0001"
    columns = {c["name"]: c["role"] for c in detail["tables"][0]["columns"]}
    assert columns["business"] == "privacy_unit"
    assert "owner_name" not in columns and "id_number" not in columns and "birth_date" not in columns

    (version,) = market.client.get(f"/v1/products/{CREDIT_SLUG}/versions", headers=regulator).json()["items"]
    recipe = version["recipe"]["tables"]["tax_credits"]["columns"]
    assert recipe["business"]["transform"]["kind"] == "pseudonymise"
    assert recipe["owner_birth_decade"]["transform"] == {**recipe["owner_birth_decade"]["transform"], "unit": "decade"}
    assert version["quality"]["tables"]["tax_credits"]["dropped_columns"] == ["owner_name"]
    k = version["audit"]["k_anonymity"]["tax_credits"]
    assert k["checked"] and k["groups_below_k"] == 0 and k["smallest_group_units"] >= 10

    answer = market.client.post(
        "/v1/queries",
        headers=buyer,
        json={
            "product": CREDIT_SLUG,
            "sql": "SELECT industry, sum(tax_credit_yuan) AS credits FROM tax_credits GROUP BY industry",
        },
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["rows"]) == 6 and answer.json()["charge"]["charge_type"] == "billable"
    public = {"Authorization": f"Bearer {keys['buyer_public']}"}
    free = market.client.post(
        "/v1/queries",
        headers=public,
        json={"product": CREDIT_SLUG, "sql": "SELECT district, count(*) FROM tax_credits GROUP BY district"},
    )
    assert free.status_code == 200 and free.json()["charge"]["charge_type"] == "free_public"

    # Safe to run twice: nothing is duplicated.
    regulator = {"Authorization": f"Bearer {build_demo(market.database, market.settings)['regulator']}"}
    again = market.client.get(f"/v1/products/{CREDIT_SLUG}/versions", headers=regulator).json()["items"]
    assert len(again) == 1
    grants = market.client.get("/v1/authorisations", headers=regulator).json()["items"]
    assert sorted(tuple(g["zones"]) for g in grants) == [("credit", "finance"), ("transport",)]
