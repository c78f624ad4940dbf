"""The privacy fee (per 0.1 epsilon of a DP query) under the regulator's caps: the zone's cap (0 unless the
grant allows one), the product's fee standard when stricter, shown beside the other caps, in the grant form."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import text

import market as package
from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.console.helpers import post_form, sign_in
from tests.factories import PLANS, authorise, listed_product

PRIVACY_PLAN = {**PLANS[1], "per_query_minor": 100, "per_gb_minor": "0", "per_tenth_epsilon_minor": 30}


def _plan(market: Market, operator: Actor, slug: str, fee: int) -> Any:
    return market.client.put(
        f"/v1/products/{slug}/plans/standard",
        headers=operator.headers,
        json={**PRIVACY_PLAN, "per_tenth_epsilon_minor": fee},
    )


def test_a_grant_without_a_privacy_cap_allows_no_privacy_fee(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    granted = authorise(market, operator, cap_without=("max_per_tenth_epsilon_minor",))  # an older client's body
    assert granted.status_code == 201, granted.text
    assert granted.json()["fee_caps"][0]["max_per_tenth_epsilon_minor"] == 0
    refused = market.client.post(
        "/v1/products",
        headers=operator.headers,
        json={"slug": "dp-fees", "title": "DP fees", "zone": "transport", "region": "CN-11", "plans": [PRIVACY_PLAN]},
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "fee_above_cap" and "per_tenth_epsilon_minor" in error["message"]


def test_the_stricter_of_the_zone_cap_and_the_fee_standard_holds_the_privacy_fee(market: Market) -> None:
    plans = [PLANS[0], PRIVACY_PLAN]
    listed = listed_product(market, "people-trips", plans=plans, cap={"max_per_tenth_epsilon_minor": 40})
    operator, regulator = listed.operator, listed.regulator
    assert _plan(market, operator, listed.slug, 41).json()["error"]["code"] == "fee_above_cap"
    assert _plan(market, operator, listed.slug, 40).status_code == 200
    path = f"/v1/products/{listed.slug}/fee-standard"
    standard = {"max_per_query_minor": 100, "max_per_gb_minor": "0", "max_monthly_fee_minor": 0}
    above_cap = market.client.put(path, headers=regulator.headers, json={**standard, "max_per_tenth_epsilon_minor": 41})
    assert above_cap.status_code == 422 and above_cap.json()["error"]["code"] == "fee_standard_above_cap"
    below_plan = market.client.put(
        path, headers=regulator.headers, json={**standard, "max_per_tenth_epsilon_minor": 20}
    )
    assert below_plan.status_code == 422 and below_plan.json()["error"]["code"] == "plan_above_fee_standard"
    assert _plan(market, operator, listed.slug, 25).status_code == 200
    set_ = market.client.put(path, headers=regulator.headers, json={**standard, "max_per_tenth_epsilon_minor": 25})
    assert set_.status_code == 200, set_.text
    assert set_.json()["max_per_tenth_epsilon_minor"] == 25
    assert _plan(market, operator, listed.slug, 26).json()["error"]["code"] == "fee_above_cap"
    # A standard that leaves the privacy fee out leaves the zone's cap to limit it.
    assert market.client.put(path, headers=regulator.headers, json=standard).status_code == 200
    assert _plan(market, operator, listed.slug, 40).status_code == 200
    fees = market.client.get(f"/v1/products/{listed.slug}/fees", headers=market.actor(Role.BUYER).headers).json()
    assert fees["zone_cap"]["per_tenth_epsilon_minor"] == "40"
    assert "per_tenth_epsilon_minor" not in fees["fee_standard"]
    assert {p["code"]: p.get("per_tenth_epsilon_minor") for p in fees["plans"]}["standard"] == 40
    catalogue = market.client.get("/v1/products", headers=market.actor(Role.BUYER).headers).json()["items"]
    entry = next(p for p in catalogue if p["slug"] == listed.slug)
    assert entry["fee_limits"]["zone_cap"]["per_tenth_epsilon_minor"] == "40"
    # Disclosures state the privacy fee cap beside the other caps, and the plan's actual privacy fee.
    year = datetime.now(UTC).year
    report = market.client.post(
        "/v1/disclosures", headers=regulator.headers, json={"year": year, "kind": "regulator_disclosure"}
    ).json()
    assert report["content"]["authorisations"][0]["fee_caps"][0]["max_per_tenth_epsilon_minor"] == 40
    html = market.client.get(f"/v1/disclosures/{report['id']}?format=html", headers=regulator.headers).text
    assert "per 0.1 ε" in html
    own = market.client.post(
        "/v1/disclosures", headers=operator.headers, json={"year": year, "kind": "operator_disclosure"}
    ).json()
    product = next(p for p in own["content"]["products"] if p["product"] == listed.slug)
    assert product["zone_cap"]["per_tenth_epsilon_minor"] == "40"


def test_the_grant_form_takes_the_privacy_fee_cap_in_yuan(market: Market) -> None:
    regulator, operator = market.actor(Role.REGULATOR), market.actor(Role.OPERATOR)
    client = sign_in(market, regulator)
    client.headers["Accept-Language"] = "en"
    page = "/console/regulator/authorisations/new"
    assert "cap_transport_per_tenth_epsilon" in client.get(page).text
    form: dict[str, Any] = {
        "operator": operator.principal.org_id,
        "zones": ["transport"],
        "regions": ["CN-11"],
        "valid_until": (datetime.now(UTC) + timedelta(days=400)).date().isoformat(),
        "cap_transport_per_query": "1.50",
        "cap_transport_per_gb": "0.125",
        "cap_transport_monthly": "3,000",
        "cap_transport_per_tenth_epsilon": "0.45",
    }
    created = post_form(client, page, page, form)
    assert created.status_code == 303, created.text  # type: ignore[attr-defined]
    grants = market.client.get("/v1/authorisations", headers=regulator.headers).json()["items"]
    assert grants[0]["fee_caps"][0]["max_per_tenth_epsilon_minor"] == 45
    detail = client.get(created.headers["location"])  # type: ignore[attr-defined]
    assert "Per 0.1 ε (privacy fee)" in detail.text and "0.45" in detail.text


def test_the_migration_lets_existing_caps_allow_the_privacy_fees_plans_already_charge(market: Market) -> None:
    """Migration 0008_dp2 on caps granted before the privacy fee cap existed (the column's default, 0)."""
    listed = listed_product(market, "people-trips", plans=[PLANS[0], PRIVACY_PLAN])
    bare = market.actor(Role.OPERATOR)  # a second operator, granted, with no plans at all
    assert authorise(market, bare).status_code == 201
    with market.database.engine.begin() as connection:
        connection.execute(text("UPDATE fee_caps SET max_per_tenth_epsilon_minor = 0"))
    path = Path(package.__file__).parent / "migrations" / "versions" / "0008_dp2.py"
    spec = importlib.util.spec_from_file_location("migration_0008_dp2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with market.database.engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        module._cap_existing_privacy_fees()
    caps = {
        g["operator"]: g["fee_caps"][0]["max_per_tenth_epsilon_minor"]
        for g in market.client.get("/v1/authorisations", headers=listed.regulator.headers).json()["items"]
    }
    assert caps == {listed.operator.principal.org_id: 30, bare.principal.org_id: 0}
