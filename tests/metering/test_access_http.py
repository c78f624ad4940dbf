"""Access requests over HTTP: purpose routes the review, state/age/deadline are visible, auto-approval."""

from __future__ import annotations

from datetime import datetime

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of, ask, decide


def test_a_request_shows_state_age_and_review_deadline_to_both_sides(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER, org="Institute A")
    created = ask(market, buyer, listed.slug, plan="public", purpose="public_welfare", scenario="air-quality")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["status"], body["reviewer_role"], body["product"], body["plan"]) == (
        "pending",
        "regulator",
        listed.slug,
        "public",
    )
    assert body["scenario"] == "air-quality" and body["buyer"] == "Institute A"
    due = datetime.fromisoformat(body["review_due_at"])
    assert (due - datetime.fromisoformat(body["created_at"])).days == 10
    assert body["age_seconds"] >= 0 and body["overdue"] is False and body["agreement_id"] is None

    as_buyer = market.client.get(f"/v1/access-requests/{body['id']}", headers=buyer.headers).json()
    as_regulator = market.client.get(f"/v1/access-requests/{body['id']}", headers=listed.regulator.headers).json()
    assert as_buyer["review_due_at"] == as_regulator["review_due_at"] == body["review_due_at"]
    pending = market.client.get("/v1/access-requests?status=pending", headers=listed.regulator.headers).json()["items"]
    assert [r["id"] for r in pending] == [body["id"]]
    assert (
        market.client.get("/v1/access-requests?status=approved", headers=listed.regulator.headers).json()["items"] == []
    )
    # another buyer and the operator (who does not review public-interest requests) cannot read it
    stranger = market.actor(Role.BUYER)
    assert market.client.get(f"/v1/access-requests/{body['id']}", headers=stranger.headers).status_code == 404
    assert market.client.get(f"/v1/access-requests/{body['id']}", headers=listed.operator.headers).status_code == 404


def test_commercial_requests_have_a_shorter_operator_deadline(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    body = ask(market, buyer, listed.slug, plan="standard", purpose="industry").json()
    assert body["reviewer_role"] == "operator"
    due = datetime.fromisoformat(body["review_due_at"]) - datetime.fromisoformat(body["created_at"])
    assert due.days == 5


def test_the_regulator_approves_public_interest_with_quota_and_period(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    request = ask(market, buyer, listed.slug, plan="public", purpose="public_governance").json()
    decided = decide(market, listed.regulator, request["id"], decision="approve", monthly_query_quota=7, valid_days=30)
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["agreement_id"]
    agreement = agreement_of(market, buyer)
    assert agreement["id"] == decided.json()["agreement_id"]
    assert agreement["monthly_query_quota"] == 7 and agreement["purpose"] == "public_governance"
    period = datetime.fromisoformat(agreement["valid_until"]) - datetime.fromisoformat(agreement["valid_from"])
    assert period.days == 30
    assert query(market, buyer, listed.slug, BY_REGION).json()["charge"]["charge_type"] == "free_public"


def test_public_interest_approval_needs_a_quota_when_the_plan_has_none(market: Market) -> None:
    listed = listed_product(
        market,
        plans=[{"code": "public", "title": "Free", "kind": "public_interest"}],
    )
    buyer = market.actor(Role.BUYER)
    request = ask(market, buyer, listed.slug, plan="public", purpose="public_welfare").json()
    refused = decide(market, listed.regulator, request["id"], decision="approve")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "quota_required"
    rows_only = decide(market, listed.regulator, request["id"], decision="approve", monthly_row_quota=10_000)
    assert rows_only.status_code == 200
    assert agreement_of(market, buyer)["monthly_row_quota"] == 10_000


def test_a_rejection_needs_a_reason_which_the_buyer_sees(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    request = ask(market, buyer, listed.slug, plan="public", purpose="public_welfare").json()
    silent = decide(market, listed.regulator, request["id"], decision="reject")
    assert silent.status_code == 422 and silent.json()["error"]["code"] == "reason_required"
    assert "reason" in silent.json()["error"]["message"]
    decide(market, listed.regulator, request["id"], decision="reject", reason="Not a public-interest purpose.")
    seen = market.client.get(f"/v1/access-requests/{request['id']}", headers=buyer.headers).json()
    assert (seen["status"], seen["decision_reason"]) == ("rejected", "Not a public-interest purpose.")
    assert seen["decided_at"] is not None


def test_bad_requests_get_4xx_codes(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    blank = ask(market, buyer, listed.slug, plan="public", purpose="public_welfare", scenario="   ")
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "scenario_required"
    unknown_purpose = ask(market, buyer, listed.slug, plan="public", purpose="curiosity")
    assert unknown_purpose.status_code == 422 and unknown_purpose.json()["error"]["code"] == "invalid_request"
    unknown_plan = ask(market, buyer, listed.slug, plan="gold", purpose="commercial")
    assert unknown_plan.status_code == 404 and unknown_plan.json()["error"]["code"] == "plan_not_found"
    assert ask(market, buyer, listed.slug, plan="public", purpose="public_welfare").status_code == 201
    again = ask(market, buyer, listed.slug, plan="public", purpose="public_welfare")
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_request"
    operator_asks = ask(market, listed.operator, listed.slug, plan="public", purpose="public_welfare")
    assert operator_asks.status_code == 403


def test_the_operator_can_auto_approve_commercial_requests(market: Market) -> None:
    listed = listed_product(market)
    url = f"/v1/products/{listed.slug}/access-settings"
    assert market.client.get(url, headers=listed.operator.headers).json()["auto_approve_commercial"] is False
    other_operator = market.actor(Role.OPERATOR)
    assert (
        market.client.put(url, headers=other_operator.headers, json={"auto_approve_commercial": True}).status_code
        == 404
    )
    buyer = market.actor(Role.BUYER)
    assert market.client.put(url, headers=buyer.headers, json={"auto_approve_commercial": True}).status_code == 403
    turned_on = market.client.put(url, headers=listed.operator.headers, json={"auto_approve_commercial": True})
    assert turned_on.status_code == 200 and turned_on.json()["auto_approve_commercial"] is True

    commercial = ask(market, buyer, listed.slug, plan="standard", purpose="commercial").json()
    assert commercial["status"] == "approved" and commercial["auto_approved"] is True and commercial["agreement_id"]
    assert query(market, buyer, listed.slug, BY_REGION).json()["charge"]["charge_type"] == "billable"
    # public-interest requests still go to the regulator
    public = ask(market, market.actor(Role.BUYER), listed.slug, plan="public", purpose="public_welfare").json()
    assert public["status"] == "pending" and public["reviewer_role"] == "regulator"


def test_a_scenario_must_be_one_the_product_allows(market: Market) -> None:
    from sqlalchemy import update

    from products.models import Product

    listed = listed_product(market)
    with market.database.transaction() as session:
        session.execute(update(Product).where(Product.slug == listed.slug).values(scenarios=["route-planning"]))
    buyer = market.actor(Role.BUYER)
    refused = ask(market, buyer, listed.slug, plan="standard", purpose="commercial", scenario="marketing")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "scenario_not_allowed"
    assert "route-planning" in refused.json()["error"]["message"]
    assert (
        ask(market, buyer, listed.slug, plan="standard", purpose="commercial", scenario="route-planning").status_code
        == 201
    )
