"""Card refunds never call Stripe under the billing locks, and survive a Stripe outage or a lost
answer without refunding twice; attempts are found at Stripe by metadata however many intents
Stripe holds (issue 10: payments exactly once)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select, text

from billing import card_payments, stripe_gateway
from billing.models import Payment, PaymentStatus
from billing.stripe_gateway import RefundState, StripeGateway, StripeUnavailable
from tests.billing.helpers import Scene, invoices_of, this_period
from tests.billing.test_stripe import _client, _finalized, _pay
from tests.conftest import ON_POSTGRES, Market


@contextmanager
def _short_lock_wait(market: Market) -> Iterator[Any]:
    """A session of another request, waiting at most half a second for locks."""
    with market.database.transaction() as session:
        if ON_POSTGRES:
            session.execute(text("SET LOCAL lock_timeout = 500"))
        else:
            session.connection().exec_driver_sql("PRAGMA busy_timeout = 500")
        yield session


def _billing_lock_is_free(market: Market) -> bool:
    """Whether another transaction could take the billing lock right now (then gives it back)."""
    try:
        with _short_lock_wait(market) as session:
            session.execute(
                text("UPDATE document_sequences SET last_number = last_number WHERE kind = 'run' AND year = 0")
            )
            session.rollback()
        return True
    except Exception:
        return False


def _refunds_at_stripe(market: Market, intent_id: str) -> list[RefundState]:
    listed = _client(market).v1.refunds.list(params={"payment_intent": intent_id, "limit": 100})
    return [RefundState.from_object(r) for r in listed.data]


def _paid_by_card(market: Market) -> tuple[Scene, dict[str, Any], str]:
    s, invoice = _finalized(market)
    paid = _pay(market, s, invoice["id"])
    assert paid.status_code == 200, paid.text
    return s, invoice, paid.json()["stripe_payment_intent_id"]


def _credit(market: Market, s: Scene, invoice_id: str, refund: int = 100) -> Any:
    return market.client.post(
        f"/v1/invoices/{invoice_id}/credit-notes",
        headers=s.finance.headers,
        json={"amount_minor": refund, "reason": "query timed out", "refund_minor": refund},
    )


def _recon_reasons(market: Market, s: Scene) -> list[str]:
    body = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    return [m["reason"] for m in body["mismatches"]]


def test_stripe_is_called_for_a_refund_only_after_the_locks_are_released(
    stripe_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = stripe_market
    s, invoice, intent_id = _paid_by_card(market)
    seen: list[bool] = []
    real_refund = StripeGateway.refund

    def watching(self: StripeGateway, **kwargs: Any) -> RefundState:
        seen.append(_billing_lock_is_free(market))
        return real_refund(self, **kwargs)

    monkeypatch.setattr(StripeGateway, "refund", watching)
    note = _credit(market, s, invoice["id"])
    assert note.status_code == 201, note.text
    assert seen == [True]  # Stripe was called once, while another finance request could take the locks
    assert note.json()["refund_status"] == "succeeded"
    assert len(_refunds_at_stripe(market, intent_id)) == 1
    assert _recon_reasons(market, s) == []


@pytest.mark.parametrize("failure", ["stripe_down", "answer_lost"])
def test_a_refund_stripe_did_not_answer_is_sent_once_by_the_recheck_job(
    stripe_market: Market, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    market = stripe_market
    s, invoice, intent_id = _paid_by_card(market)
    real_refund = StripeGateway.refund

    def failing(self: StripeGateway, **kwargs: Any) -> RefundState:
        if failure == "answer_lost":
            real_refund(self, **kwargs)  # Stripe refunds; its answer never reaches us
        raise StripeUnavailable("stripe_error", detail="connection reset")

    monkeypatch.setattr(StripeGateway, "refund", failing)
    note = _credit(market, s, invoice["id"])
    # The credit note stands; its refund waits, recorded, and nothing moved in the books yet.
    assert note.status_code == 201, note.text
    assert note.json()["refund_status"] == "pending"
    assert invoices_of(market, s.commercial)[0]["paid_minor"] == invoice["total_minor"]
    # Reconciliation names it until Stripe confirms it (so the period cannot close over it).
    assert "refund_pending" in _recon_reasons(market, s)
    # Finance cannot refund the same money twice while it is pending.
    again = _credit(market, s, invoice["id"], refund=invoice["total_minor"])
    assert again.status_code == 422, again.text
    monkeypatch.setattr(StripeGateway, "refund", real_refund)
    assert card_payments.recheck_pending(market.database, market.settings) >= 1
    assert card_payments.recheck_pending(market.database, market.settings) == 0
    assert len(_refunds_at_stripe(market, intent_id)) == 1  # once, whichever way it failed
    with market.database.transaction() as session:
        refund = session.scalars(select(Payment).where(Payment.id == note.json()["refund_payment_id"])).one()
        assert refund.status == PaymentStatus.SUCCEEDED.value and refund.reference.startswith("re_")
    assert invoices_of(market, s.commercial)[0]["paid_minor"] == invoice["total_minor"] - 100
    assert _recon_reasons(market, s) == []


def test_an_attempt_is_found_at_stripe_however_many_intents_it_holds(
    stripe_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to a charge is lost; Stripe holds more intents than the old 20 pages of the list
    on either side of ours (pages of 3 here). The buyer's retry finds it and is not charged again."""
    market = stripe_market
    monkeypatch.setattr(stripe_gateway, "PAGE_SIZE", 3)
    s, invoice = _finalized(market)
    client = _client(market)
    customer = client.v1.customers.create(params={"name": "crowd"})

    def crowd(count: int) -> None:
        for _ in range(count):
            client.v1.payment_intents.create(params={"amount": 100, "currency": "cny", "customer": customer.id})

    crowd(61)
    real_pay = StripeGateway.pay

    def lost(self: StripeGateway, **kwargs: Any) -> Any:
        real_pay(self, **kwargs)
        crowd(61)  # newer intents than ours, as a busy Stripe account would have
        raise StripeUnavailable("stripe_error", detail="connection reset")

    monkeypatch.setattr(StripeGateway, "pay", lost)
    assert _pay(market, s, invoice["id"]).status_code == 503
    monkeypatch.setattr(StripeGateway, "pay", real_pay)
    retried = _pay(market, s, invoice["id"])
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "succeeded"
    ours = [i for i in StripeGateway(market.settings).intents() if i.metadata.get("invoice_id") == invoice["id"]]
    assert len(ours) == 1  # no second charge
    assert invoices_of(market, s.commercial)[0]["status"] == "paid"


def test_without_search_every_page_is_read(stripe_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """localstripe has no search: the gateway notices and lists instead, and finds the newest intent."""
    market = stripe_market
    monkeypatch.setattr(stripe_gateway, "PAGE_SIZE", 2)
    gateway = StripeGateway(market.settings)
    client = _client(market)
    for _ in range(45):
        client.v1.payment_intents.create(params={"amount": 100, "currency": "cny"})
    target = client.v1.payment_intents.create(
        params={"amount": 100, "currency": "cny", "metadata": {"payment_id": "pay_needle", "attempt_key": "k"}}
    )
    found = gateway.find_intent(payment_id="pay_needle", key="k")
    assert gateway.search_supported is False
    assert found is not None and found.id == target.id
