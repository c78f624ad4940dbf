"""Card payments end to end against localstripe: paying, a declined card, webhooks (duplicate, bad
signature, out of order), the re-check of pending payments, refunds through credit notes."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import stripe

from billing import payments
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.helpers import Scene, invoices_of, run, scene, this_period
from tests.conftest import Market


def _client(market: Market) -> stripe.StripeClient:
    assert market.settings.stripe_api_key is not None
    return stripe.StripeClient(
        market.settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": market.settings.stripe_api_base or ""},
        max_network_retries=0,
    )


def _finalized(market: Market) -> tuple[Scene, dict[str, Any]]:
    s = scene(market, commercial_queries=2, public_queries=0)
    run(market, s.finance, finalize=True)
    return s, invoices_of(market, s.commercial)[0]


def _pay(market: Market, s: Scene, invoice_id: str, method: str = "pm_card_visa") -> Any:
    return market.client.post(
        f"/v1/invoices/{invoice_id}/pay", headers=s.commercial.headers, json={"payment_method": method}
    )


def _event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def _send(market: Market, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> Any:
    payload = json.dumps(event)
    stamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return market.client.post(
        "/v1/stripe/webhook",
        content=payload,
        headers={"Stripe-Signature": f"t={stamp},v1={signature}", "Content-Type": "application/json"},
    )


def _intent(market: Market, intent_id: str) -> dict[str, Any]:
    return dict(_client(market).v1.payment_intents.retrieve(intent_id).to_dict())


def test_buyer_pays_by_card(stripe_market: Market) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    paid = _pay(market, s, invoice["id"])
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert body["status"] == "succeeded" and body["amount_minor"] == invoice["total_minor"]
    assert body["stripe_payment_intent_id"].startswith("pi_")
    after = invoices_of(market, s.commercial)[0]
    assert after["status"] == "paid" and after["due_minor"] == 0
    again = _pay(market, s, invoice["id"])
    assert again.status_code == 409

    # The succeeded webhook arrives after the synchronous answer: handled, and changes nothing.
    event = _event("payment_intent.succeeded", _intent(market, body["stripe_payment_intent_id"]))
    assert _send(market, event).json() == {"status": "handled"}
    assert _send(market, event).json() == {"status": "duplicate"}
    assert invoices_of(market, s.commercial)[0]["paid_minor"] == invoice["total_minor"]

    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    assert recon["mismatches"] == []
    assert recon["paid_minor"] == recon["distributed_minor"] == invoice["total_minor"]


def test_declined_card_then_a_good_one(stripe_market: Market) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    declined = _pay(market, s, invoice["id"], "pm_card_chargeCustomerFail")
    assert declined.status_code == 402, declined.text
    assert declined.json()["error"]["code"] == "card_declined"
    listed = market.client.get("/v1/payments", headers=s.commercial.headers).json()["items"]
    assert [p["status"] for p in listed] == ["failed"]
    assert invoices_of(market, s.commercial)[0]["status"] == "finalized"
    good = _pay(market, s, invoice["id"])
    assert good.status_code == 200 and good.json()["status"] == "succeeded"
    assert invoices_of(market, s.commercial)[0]["status"] == "paid"


def test_bad_signature_is_refused(stripe_market: Market) -> None:
    market = stripe_market
    event = _event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent", "status": "succeeded"})
    refused = _send(market, event, secret="whsec_wrong")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "webhook_signature_invalid"
    missing = market.client.post("/v1/stripe/webhook", content=json.dumps(event))
    assert missing.status_code == 400


def test_out_of_order_events_for_an_intent_we_never_stored(stripe_market: Market) -> None:
    """A crash between Stripe's charge and our commit: the webhooks alone settle the invoice."""
    market = stripe_market
    s, invoice = _finalized(market)
    client = _client(market)
    customer = client.v1.customers.create(params={"name": "crash test"})
    intent = client.v1.payment_intents.create(
        params={
            "amount": invoice["total_minor"],
            "currency": "cny",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"invoice_id": invoice["id"]},
        }
    ).to_dict()
    failed_first = dict(intent, status="requires_payment_method", last_payment_error={"code": "card_declined"})
    assert _send(market, _event("payment_intent.payment_failed", failed_first)).status_code == 200
    assert invoices_of(market, s.commercial)[0]["status"] == "finalized"
    assert _send(market, _event("payment_intent.succeeded", intent)).status_code == 200
    assert invoices_of(market, s.commercial)[0]["status"] == "paid"
    # A late failure event never undoes a success.
    assert _send(market, _event("payment_intent.payment_failed", failed_first)).status_code == 200
    after = invoices_of(market, s.commercial)[0]
    assert after["status"] == "paid" and after["paid_minor"] == invoice["total_minor"]
    listed = market.client.get("/v1/payments", headers=s.finance.headers).json()["items"]
    assert [p["status"] for p in listed] == ["succeeded"]


def test_pending_payment_is_rechecked(stripe_market: Market) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    client = _client(market)
    customer = client.v1.customers.create(params={"name": "pending"})
    intent = client.v1.payment_intents.create(
        params={
            "amount": invoice["total_minor"],
            "currency": "cny",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "metadata": {"invoice_id": invoice["id"]},
        }
    )
    assert _send(market, _event("payment_intent.created", intent.to_dict())).status_code == 200
    pending = market.client.get("/v1/payments", headers=s.finance.headers, params={"status": "pending"}).json()["items"]
    assert len(pending) == 1
    client.v1.payment_intents.confirm(intent.id)
    with market.database.transaction() as session:
        assert payments.recheck_pending(session, market.settings) == 1
    assert invoices_of(market, s.commercial)[0]["status"] == "paid"


def test_stripe_amount_different_from_ours_is_a_mismatch(stripe_market: Market) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    paid = _pay(market, s, invoice["id"]).json()
    tampered = dict(_intent(market, paid["stripe_payment_intent_id"]))
    tampered["amount_received"] = tampered["amount"] = invoice["total_minor"] - 1
    assert _send(market, _event("payment_intent.succeeded", tampered)).status_code == 200
    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    assert [m["reason"] for m in recon["mismatches"]] == ["stripe_amount_mismatch"]
    assert recon["mismatches"][0]["objects"]["payment"] == paid["id"]


def test_refund_through_a_credit_note(stripe_market: Market) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    assert _pay(market, s, invoice["id"]).status_code == 200
    note = market.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        headers=s.finance.headers,
        json={"amount_minor": 100, "reason": "query timed out", "refund_minor": 100},
    )
    assert note.status_code == 201, note.text
    refunds = [
        p for p in market.client.get("/v1/payments", headers=s.finance.headers).json()["items"] if p["amount_minor"] < 0
    ]
    assert len(refunds) == 1 and refunds[0]["reference"].startswith("re_") and refunds[0]["method"] == "stripe"
    balances = {
        r["account"]: r["balance_minor"]
        for r in market.client.get("/v1/ledger/balances", headers=s.finance.headers).json()["items"]
    }
    assert balances["cash:stripe"] == invoice["total_minor"] - 100 and sum(balances.values()) == 0
    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    assert recon["mismatches"] == [] and recon["distributed_minor"] == recon["paid_minor"]
