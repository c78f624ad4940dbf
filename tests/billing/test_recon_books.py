"""Reconciliation of monthly fees, of currencies kept apart, and of Stripe's records against ours."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from billing import rating, reconciliation
from billing.config import Period
from billing.models import InvoiceLine, Payment
from metering.models import Agreement
from tests.billing.helpers import invoices_of, run, scene, this_period
from tests.billing.test_properties import _add_usage, _fresh_period
from tests.conftest import Market
from tests.factories import PLANS

FEE_PLANS = [PLANS[0], {**PLANS[1], "monthly_fee_minor": 5_000}]


def _reasons(market: Market, finance_headers: dict[str, str], period: str) -> dict[str, dict]:  # type: ignore[type-arg]
    report = market.client.get("/v1/reconciliation", headers=finance_headers, params={"period": period}).json()
    return {m["reason"]: m for m in report["mismatches"]}


def test_monthly_fee_lines_are_checked_against_the_agreements(market: Market) -> None:
    s = scene(market, commercial_queries=1, public_queries=1, plans=FEE_PLANS)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    fee = next(x for x in invoice["lines"] if x["component"] == "monthly_fee")
    assert fee["amount_minor"] == 5_000
    assert set(_reasons(market, s.finance.headers, this_period())) == {"unpaid"}

    with market.database.transaction() as session:
        session.execute(update(InvoiceLine).where(InvoiceLine.id == fee["id"]).values(amount_minor=500))
    found = _reasons(market, s.finance.headers, this_period())
    assert found["monthly_fee_mismatch"]["objects"]["line"] == fee["id"]
    assert found["monthly_fee_mismatch"]["amount_minor"] == -4_500

    with market.database.transaction() as session:
        session.execute(delete(InvoiceLine).where(InvoiceLine.id == fee["id"]))
    found = _reasons(market, s.finance.headers, this_period())
    assert found["monthly_fee_missing"]["objects"] == {"invoice": invoice["id"], "agreement": fee["agreement_id"]}
    assert found["monthly_fee_missing"]["amount_minor"] == 5_000


def test_totals_are_kept_per_currency_never_added(market: Market) -> None:
    s = scene(market, commercial_queries=0, public_queries=0)
    period = _fresh_period()
    with market.database.transaction() as session:
        agreement = session.scalars(
            select(Agreement).where(Agreement.buyer_org_id == s.commercial.principal.org_id)
        ).one()
        _add_usage(session, agreement, period, [("billable", 700)])
        # The other buyer's agreement is in dollars (as a foreign buyer's would be).
        dollars = session.scalars(select(Agreement).where(Agreement.buyer_org_id == s.public.principal.org_id)).one()
        dollars.currency = "USD"
        _add_usage(session, dollars, period, [("billable", 40), ("billable", 2)])
    with market.database.transaction() as session:
        rating.run_period(session, period)
        report = reconciliation.reconcile(session, s.finance.principal, Period.parse(period.key))
    assert report.currency == "CNY"
    assert report.usage_billable_minor == 700
    assert report.by_currency["USD"].usage_billable_minor == 42
    assert report.by_currency["CNY"].usage_billable_minor == 700
    drafts = {m.currency: m.amount_minor for m in report.mismatches if m.reason == "invoice_not_finalized"}
    assert drafts == {"CNY": 700, "USD": 42}


def test_stripe_records_are_compared_with_ours(stripe_market: Market) -> None:
    market = stripe_market
    s = scene(market, commercial_queries=2, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    paid = market.client.post(
        f"/v1/invoices/{invoice['id']}/pay", headers=s.commercial.headers, json={"payment_method": "pm_card_visa"}
    )
    assert paid.status_code == 200, paid.text
    assert _reasons(market, s.finance.headers, this_period()) == {}
    with market.database.transaction() as session:
        session.execute(update(Payment).where(Payment.id == paid.json()["id"]).values(status="failed"))
    found = _reasons(market, s.finance.headers, this_period())
    assert found["stripe_status_mismatch"]["objects"]["payment"] == paid.json()["id"]
    assert "Stripe says succeeded" in found["stripe_status_mismatch"]["detail"]
