"""Agreements over HTTP: frozen snapshots, ODRL export, revocation and expiry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from market.accounts.models import Role
from market.clock import utcnow
from metering.models import Agreement
from products.models import PricePlan, Product
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of, usage


def test_an_agreement_is_a_snapshot_that_later_changes_do_not_alter(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    before = agreement_of(market, buyer)
    assert before["product_version_number"] == 1 and before["region"] == "CN-11" and before["zone"] == "transport"
    assert before["plan"]["per_query_minor"] == 150 and before["policy"]["min_group_size"] == 10
    assert before["scenario"] == "analysis" and before["status"] == "active"

    # the operator reprices the plan and narrows the product to a district (still inside its authorised region)
    with market.database.transaction() as session:
        session.execute(update(PricePlan).where(PricePlan.code == "standard").values(per_query_minor=999))
        session.execute(update(Product).where(Product.slug == listed.slug).values(region="CN-11-05"))

    after = agreement_of(market, buyer)
    assert after == before
    charged = query(market, buyer, listed.slug, BY_REGION).json()["charge"]
    assert charged["amount_minor"] == 150  # the snapshot's price, not the new one


def test_odrl_export_has_constraints_and_a_compensate_duty(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="industry", plan="standard", monthly_query_quota=50)
    agreement = agreement_of(market, buyer)
    response = market.client.get(f"/v1/agreements/{agreement['id']}/odrl", headers=buyer.headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/ld+json")
    policy = response.json()
    assert "http://www.w3.org/ns/odrl.jsonld" in policy["@context"]
    assert policy["@type"] == "Agreement" and policy["uid"].endswith(agreement["id"])
    permission = policy["permission"][0]
    constraints = {(c["leftOperand"], c["operator"]): c["rightOperand"] for c in permission["constraint"]}
    assert constraints[("purpose", "eq")] == "market:industry"
    assert constraints[("spatial", "eq")] == "CN-11"
    assert constraints[("dateTime", "gteq")]["@value"].startswith(agreement["valid_from"][:19])
    assert constraints[("dateTime", "lt")]["@type"] == "xsd:dateTime"
    assert constraints[("count", "lteq")] == 50
    duties = permission["duty"]
    actions = {d["action"][0]["rdf:value"]["@id"] for d in duties}
    assert actions == {"odrl:compensate"}
    amounts = {d["market:per"]: d["action"][0]["refinement"][0] for d in duties}
    assert amounts["query"]["leftOperand"] == "payAmount"
    assert amounts["query"]["rightOperand"] == {"@value": "1.50", "@type": "xsd:decimal"}
    assert amounts["GB scanned"]["rightOperand"]["@value"] == "10.00"
    assert duties[0]["market:monthlyMaximum"]["@value"] == "1000.00"
    # the operator and the regulator can export it; another buyer cannot see it
    assert (
        market.client.get(f"/v1/agreements/{agreement['id']}/odrl", headers=listed.operator.headers).status_code == 200
    )
    stranger = market.actor(Role.BUYER)
    assert market.client.get(f"/v1/agreements/{agreement['id']}/odrl", headers=stranger.headers).status_code == 404


def test_public_interest_odrl_has_no_compensate_duty(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    agreement = agreement_of(market, buyer)
    policy = market.client.get(f"/v1/agreements/{agreement['id']}/odrl", headers=listed.regulator.headers).json()
    assert "duty" not in policy["permission"][0]
    assert {"leftOperand": "purpose", "operator": "eq", "rightOperand": "market:public_welfare"} in policy[
        "permission"
    ][0]["constraint"]


def test_revoked_agreement_refuses_queries_with_403_and_records_them(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    agreement = agreement_of(market, buyer)
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    url = f"/v1/agreements/{agreement['id']}/revoke"
    assert market.client.post(url, headers=buyer.headers, json={"reason": "x"}).status_code == 403
    assert market.client.post(url, headers=market.actor(Role.OPERATOR).headers, json={"reason": "x"}).status_code == 404
    no_reason = market.client.post(url, headers=listed.operator.headers, json={"reason": ""})
    assert no_reason.status_code == 422
    revoked = market.client.post(url, headers=listed.operator.headers, json={"reason": "Unpaid invoices."})
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["status"], revoked.json()["revoked_by_role"]) == ("revoked", "operator")
    assert revoked.json()["revoked_reason"] == "Unpaid invoices."
    again = market.client.post(url, headers=listed.regulator.headers, json={"reason": "twice"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "agreement_not_active"

    refused = query(market, buyer, listed.slug, BY_REGION)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "agreement_revoked" and "Unpaid invoices." in error["message"]
    records = usage(market, buyer)
    assert (records[0]["charge_type"], records[0]["amount_minor"], records[0]["error_code"]) == (
        "rejected",
        0,
        "agreement_revoked",
    )


def test_the_regulator_can_revoke_and_a_new_agreement_restores_access(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    agreement = agreement_of(market, buyer)
    revoked = market.client.post(
        f"/v1/agreements/{agreement['id']}/revoke", headers=listed.regulator.headers, json={"reason": "Misuse."}
    )
    assert revoked.json()["revoked_by_role"] == "regulator"
    assert query(market, buyer, listed.slug, BY_REGION).json()["error"]["code"] == "agreement_revoked"
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200


def test_expired_agreement_refuses_queries_with_403(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard", valid_days=1)
    agreement = agreement_of(market, buyer)
    with market.database.transaction() as session:
        session.execute(
            update(Agreement).where(Agreement.id == agreement["id"]).values(valid_until=utcnow() - timedelta(seconds=1))
        )
    assert agreement_of(market, buyer)["status"] == "expired"
    refused = query(market, buyer, listed.slug, BY_REGION)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "agreement_expired"
    revoke = market.client.post(
        f"/v1/agreements/{agreement['id']}/revoke", headers=listed.operator.headers, json={"reason": "late"}
    )
    assert revoke.status_code == 409
    assert usage(market, buyer)[0]["error_code"] == "agreement_expired"


def test_agreement_lists_respect_tenancy(market: Market) -> None:
    listed = listed_product(market)
    mine, theirs = market.actor(Role.BUYER), market.actor(Role.BUYER)
    grant(market, listed, mine, purpose="commercial", plan="standard")
    grant(market, listed, theirs, purpose="public_welfare", plan="public")
    other_listed = listed_product(market, slug="other-product")
    other_buyer = market.actor(Role.BUYER)
    grant(market, other_listed, other_buyer, purpose="commercial", plan="standard")
    assert len(market.client.get("/v1/agreements", headers=mine.headers).json()["items"]) == 1
    assert len(market.client.get("/v1/agreements", headers=listed.operator.headers).json()["items"]) == 2
    assert len(market.client.get("/v1/agreements", headers=other_listed.operator.headers).json()["items"]) == 1
    assert len(market.client.get("/v1/agreements", headers=listed.regulator.headers).json()["items"]) == 3
    theirs_id = agreement_of(market, theirs)["id"]
    assert market.client.get(f"/v1/agreements/{theirs_id}", headers=mine.headers).status_code == 404
    assert market.client.get(f"/v1/agreements/{theirs_id}", headers=other_listed.operator.headers).status_code == 404


def test_a_buyer_with_two_agreements_chooses_which_one_a_query_runs_under(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    by_purpose = {
        a["purpose"]: a["id"] for a in market.client.get("/v1/agreements", headers=buyer.headers).json()["items"]
    }
    newest = query(market, buyer, listed.slug, BY_REGION).json()
    assert newest["agreement_id"] == by_purpose["commercial"] and newest["charge"]["charge_type"] == "billable"
    chosen = market.client.post(
        "/v1/queries",
        headers=buyer.headers,
        json={"product": listed.slug, "sql": BY_REGION, "agreement": by_purpose["public_welfare"]},
    ).json()
    assert chosen["agreement_id"] == by_purpose["public_welfare"] and chosen["charge"]["charge_type"] == "free_public"
    other = market.actor(Role.BUYER)
    grant(market, listed, other, purpose="commercial", plan="standard")
    theirs = agreement_of(market, other)["id"]
    stolen = market.client.post(
        "/v1/queries", headers=buyer.headers, json={"product": listed.slug, "sql": BY_REGION, "agreement": theirs}
    )
    assert stolen.status_code == 403 and stolen.json()["error"]["code"] == "agreement_not_yours"
