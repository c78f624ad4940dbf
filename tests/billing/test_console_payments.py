"""Paying an invoice from the console's invoice page: by card where Stripe is configured (localstripe)."""

from __future__ import annotations

import re
from typing import Any

from market.clock import utcnow
from tests.billing.helpers import invoices_of, run, scene
from tests.conftest import Market
from tests.console.helpers import csrf_of, sign_in


def test_buyer_pays_by_card_from_the_invoice_page_after_a_declined_card(stripe_market: Market) -> None:
    s = scene(stripe_market, commercial_queries=2, public_queries=0)
    run(stripe_market, s.finance, finalize=True)
    invoice = invoices_of(stripe_market, s.commercial)[0]
    client = sign_in(stripe_market, s.commercial)
    page = client.get(f"/console/invoices/{invoice['id']}", headers={"Accept-Language": "en"})
    assert 'name="card_number"' in page.text and 'autocomplete="cc-csc"' in page.text and "Bank transfer" in page.text
    action = f"/console/invoices/{invoice['id']}/pay"
    year = str(utcnow().year + 2)

    def pay(number: str, **fields: str) -> Any:
        card = {"card_number": number, "exp_month": "12", "exp_year": year, "cvc": "123"} | fields
        return client.post(action, data={**card, "csrf_token": csrf_of(page.text)}, headers={"Accept-Language": "en"})

    # Details that cannot be a card are answered next to their fields, and nothing reaches Stripe.
    wrong = pay("1234", cvc="1", exp_month="13")
    assert wrong.status_code == 422
    for field in ("card_number", "cvc", "exp_month"):
        assert f'id="{field}-error"' in wrong.text, field
    assert "12 to 19 digits" in wrong.text and "1234" not in re.findall(r'value="([^"]*)"', wrong.text)
    declined = pay("4000 0000 0000 0341")  # localstripe: attaches, then the charge fails
    assert declined.status_code == 402 and 'role="alert"' in declined.text
    paid = pay("4242 4242 4242 4242")
    assert paid.status_code == 303 and paid.headers["location"].endswith("?paid=1")
    after = invoices_of(stripe_market, s.commercial)[0]
    assert after["status"] == "paid" and after["paid_minor"] == invoice["total_minor"]
    payments = stripe_market.client.get("/v1/payments", headers=s.finance.headers).json()["items"]
    assert sorted(p["status"] for p in payments) == ["failed", "succeeded"], "the declined attempt is kept"
    # No card detail is kept beside the payment (timestamps left out: their microseconds may read 4242 by chance).
    kept = [str(v) for p in payments for k, v in p.items() if not k.endswith("_at")]
    assert not any("4242" in value for value in kept), kept


def test_without_stripe_the_invoice_page_offers_bank_transfer_only(market: Market) -> None:
    s = scene(market, commercial_queries=1, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    page = sign_in(market, s.commercial).get(f"/console/invoices/{invoice['id']}", headers={"Accept-Language": "en"})
    assert 'name="payment_method"' not in page.text
    assert "Bank transfer" in page.text and (invoice["number"] or invoice["id"]) in page.text
