"""Card payments exactly once, against a real server process and localstripe: a `kill -9` between
Stripe's charge and our commit, 20 copies of one webhook at once, a webhook arriving during the
payment it reports. No hang, no 5xx, one payment, one charge."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from billing import card_payments
from billing.models import Payment, PaymentStatus, StripeEvent
from billing.stripe_gateway import StripeGateway
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.helpers import Scene, invoices_of, run, scene
from tests.billing.test_stripe import _client
from tests.conftest import Market
from tests.served import killing_proxy, served

TIMEOUT = httpx.Timeout(120.0)


def _finalized(market: Market) -> tuple[Scene, dict[str, Any]]:
    s = scene(market, commercial_queries=2, public_queries=0)
    run(market, s.finance, finalize=True)
    return s, invoices_of(market, s.commercial)[0]


def _stripe_env(market: Market, api_base: str) -> dict[str, str]:
    assert market.settings.stripe_api_key is not None and market.settings.stripe_webhook_secret is not None
    return {
        "MARKET_STRIPE_API_KEY": market.settings.stripe_api_key.get_secret_value(),
        "MARKET_STRIPE_API_BASE": api_base,
        "MARKET_STRIPE_WEBHOOK_SECRET": market.settings.stripe_webhook_secret.get_secret_value(),
    }


def _intents_for(market: Market, invoice_id: str) -> list[Any]:
    """The invoice's intents at Stripe, from every page of the list (the session's localstripe holds
    the intents of every test, oldest first)."""
    return [i for i in StripeGateway(market.settings).intents() if i.metadata.get("invoice_id") == invoice_id]


def _payments(market: Market, invoice_id: str) -> list[Payment]:
    with market.database.transaction() as session:
        return list(session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)))


@pytest.mark.parametrize("recovery", ["buyer_retries", "recheck_job"])
def test_kill_9_between_charge_and_commit_never_charges_twice(
    stripe_market: Market, tmp_path: Path, recovery: str
) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    assert market.settings.stripe_api_base is not None
    victims: list[subprocess.Popen[bytes]] = []
    with (
        killing_proxy(market.settings.stripe_api_base, victims) as proxy,
        served(market, tmp_path, **_stripe_env(market, proxy)) as server,
    ):
        victims.append(server.process)
        with pytest.raises(httpx.TransportError) as crashed:
            httpx.post(
                f"{server.url}/v1/invoices/{invoice['id']}/pay",
                headers=s.commercial.headers,
                json={"payment_method": "pm_card_visa"},
                timeout=TIMEOUT,
            )
        # Killed by SIGKILL once Stripe had charged (the proxy reaps it; wait, never poll, to see that).
        assert server.process.wait(timeout=30) == -signal.SIGKILL, crashed.value
    # Stripe charged once; our attempt was committed before the call, its outcome never was.
    assert [i.status for i in _intents_for(market, invoice["id"])] == ["succeeded"]
    assert [p.status for p in _payments(market, invoice["id"])] == [PaymentStatus.PENDING.value]

    if recovery == "buyer_retries":
        with served(market, tmp_path, **_stripe_env(market, market.settings.stripe_api_base)) as server:
            retried = httpx.post(
                f"{server.url}/v1/invoices/{invoice['id']}/pay",
                headers=s.commercial.headers,
                json={"payment_method": "pm_card_visa"},
                timeout=TIMEOUT,
            )
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "succeeded"
    else:
        assert card_payments.recheck_pending(market.database, market.settings) == 1
    assert len(_intents_for(market, invoice["id"])) == 1  # no second charge
    assert [p.status for p in _payments(market, invoice["id"])] == [PaymentStatus.SUCCEEDED.value]
    paid = invoices_of(market, s.commercial)[0]
    assert paid["status"] == "paid" and paid["paid_minor"] == invoice["total_minor"]


def test_recheck_settles_a_succeeded_intent_we_never_stored(stripe_market: Market) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    client = _client(market)
    customer = client.v1.customers.create(params={"name": "lost"})
    client.v1.payment_intents.create(
        params={  # type: ignore[typeddict-unknown-key]
            "amount": invoice["total_minor"],
            "currency": "cny",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"invoice_id": invoice["id"], "payment_id": f"pay_{secrets.token_hex(10)}"},
        }
    )
    assert _payments(market, invoice["id"]) == []
    assert card_payments.recheck_pending(market.database, market.settings) == 1
    assert card_payments.recheck_pending(market.database, market.settings) == 0  # once
    assert invoices_of(market, s.commercial)[0]["status"] == "paid"


def _signed(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    payload = json.dumps(event)
    stamp = int(time.time())
    signature = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={stamp},v1={signature}", "Content-Type": "application/json"}


def test_twenty_copies_of_one_webhook_at_once(stripe_market: Market, tmp_path: Path) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    client = _client(market)
    customer = client.v1.customers.create(params={"name": "webhooks"})
    intent = client.v1.payment_intents.create(
        params={  # type: ignore[typeddict-unknown-key]
            "amount": invoice["total_minor"],
            "currency": "cny",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"invoice_id": invoice["id"]},
        }
    )
    event = {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": intent.to_dict()},
    }
    payload, headers = _signed(event)
    assert market.settings.stripe_api_base is not None
    with served(market, tmp_path, **_stripe_env(market, market.settings.stripe_api_base)) as server:

        def send(_: int) -> int:
            return httpx.post(
                f"{server.url}/v1/stripe/webhook", content=payload, headers=headers, timeout=TIMEOUT
            ).status_code

        def read(_: int) -> int:
            return httpx.get(f"{server.url}/v1/invoices", headers=s.finance.headers, timeout=TIMEOUT).status_code

        with ThreadPoolExecutor(max_workers=25) as pool:
            webhooks = pool.map(send, range(20))
            reads = pool.map(read, range(5))
            statuses, others = list(webhooks), list(reads)
    assert statuses == [200] * 20 and others == [200] * 5
    assert [p.status for p in _payments(market, invoice["id"])] == [PaymentStatus.SUCCEEDED.value]
    with market.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(StripeEvent)) == 1
        assert session.get(StripeEvent, event["id"]).handled_at is not None  # type: ignore[union-attr]
    paid = invoices_of(market, s.commercial)[0]
    assert paid["status"] == "paid" and paid["paid_minor"] == invoice["total_minor"]


def test_a_webhook_during_the_payment_it_reports(stripe_market: Market, tmp_path: Path) -> None:
    market = stripe_market
    s, invoice = _finalized(market)
    assert market.settings.stripe_api_base is not None
    name = f"market-{secrets.token_hex(4)}"
    with served(market, tmp_path, **_stripe_env(market, market.settings.stripe_api_base)) as server:
        _register_webhook(market, name, f"{server.url}/v1/stripe/webhook", ["payment_intent.succeeded"])
        try:
            paid = httpx.post(
                f"{server.url}/v1/invoices/{invoice['id']}/pay",
                headers=s.commercial.headers,
                json={"payment_method": "pm_card_visa"},
                timeout=TIMEOUT,
            )
            assert paid.status_code == 200, paid.text
            deadline = time.monotonic() + 30
            while not _events(market) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _events(market) == 1  # localstripe's webhook arrived and was handled
        finally:
            _register_webhook(market, name, f"{server.url}/v1/stripe/webhook", ["none.never"])
    assert [p.status for p in _payments(market, invoice["id"])] == [PaymentStatus.SUCCEEDED.value]
    assert len(_intents_for(market, invoice["id"])) == 1
    after = invoices_of(market, s.commercial)[0]
    assert after["status"] == "paid" and after["paid_minor"] == invoice["total_minor"]


def _events(market: Market) -> int:
    with market.database.transaction() as session:
        handled = select(func.count()).select_from(StripeEvent).where(StripeEvent.handled_at.is_not(None))
        return int(session.scalar(handled) or 0)


def _register_webhook(market: Market, name: str, url: str, events: list[str]) -> None:
    body = json.dumps({"url": url, "secret": WEBHOOK_SECRET, "events": events}).encode()
    request = urllib.request.Request(
        f"{market.settings.stripe_api_base}/_config/webhooks/{name}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()
