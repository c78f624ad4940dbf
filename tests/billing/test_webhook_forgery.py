"""The Stripe webhook takes no API key, so its signature is all that stands between anyone and a paid
invoice: forged, missing, tampered and stale signatures are refused and change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.helpers import invoices_of, run, scene
from tests.conftest import Market


def _succeeded(invoice: dict[str, Any]) -> dict[str, Any]:
    """The event an attacker would like us to believe: the invoice's full amount paid by card."""
    return {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"pi_{secrets.token_hex(8)}",
                "object": "payment_intent",
                "status": "succeeded",
                "amount": invoice["total_minor"],
                "amount_received": invoice["total_minor"],
                "currency": "cny",
                "metadata": {"invoice_id": invoice["id"]},
            }
        },
    }


def _signature(payload: str, secret: str = WEBHOOK_SECRET, stamp: int | None = None) -> str:
    stamp = stamp or int(time.time())
    digest = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def _post(market: Market, payload: str, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return market.client.post("/v1/stripe/webhook", content=payload, headers=headers)


def test_forged_webhooks_never_mark_an_invoice_paid(stripe_market: Market) -> None:
    market = stripe_market
    s = scene(market, commercial_queries=1, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    assert invoice["status"] == "finalized" and invoice["total_minor"] > 0

    payload = json.dumps(_succeeded(invoice))
    other = json.dumps(_succeeded(invoice))
    attempts = {
        "wrong secret": (payload, _signature(payload, secret="whsec_guessed")),
        "no signature": (payload, None),
        "garbage signature": (payload, "t=1,v1=deadbeef"),
        "signature of another body": (payload, _signature(other)),
        "stale signature (replay)": (payload, _signature(payload, stamp=int(time.time()) - 3600)),
        "signed by the buyer's API key": (payload, _signature(payload, secret=s.commercial.key)),
    }
    for name, (body, signature) in attempts.items():
        response = _post(market, body, signature)
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["code"] == "webhook_signature_invalid", name

    after = invoices_of(market, s.commercial)[0]
    assert after["status"] == "finalized" and after["paid_minor"] == 0
    assert market.client.get("/v1/payments", headers=s.finance.headers).json()["items"] == []

    # The same event, properly signed, is what settles it: the refusals above were about the signature.
    assert _post(market, payload, _signature(payload)).status_code == 200
    assert invoices_of(market, s.commercial)[0]["status"] == "paid"


def test_webhook_without_stripe_configured_changes_nothing(market: Market) -> None:
    s = scene(market, commercial_queries=1, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    payload = json.dumps(_succeeded(invoice))
    response = _post(market, payload, _signature(payload))
    assert 400 <= response.status_code < 600 and response.status_code != 500
    assert response.json()["error"]["code"] == "stripe_not_configured"
    assert invoices_of(market, s.commercial)[0]["status"] == "finalized"
