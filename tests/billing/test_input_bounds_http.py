"""Amounts, offsets and times beyond what the columns hold are 422 naming the field, never a 500."""

from __future__ import annotations

import base64
import json

from market.accounts.models import Role
from market.money import MAX_AMOUNT_MINOR
from tests.billing.helpers import invoices_of, run, scene
from tests.conftest import Market
from tests.market.test_hostile_input_http import assert_error


def test_amounts_beyond_the_maximum_are_422_and_record_nothing(market: Market) -> None:
    # Before: 2**70 overflowed the BigInteger column (500); 2**63-1 was stored and then broke every sum.
    s = scene(market, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    too_much = MAX_AMOUNT_MINOR + 1
    for path, body in [
        (f"/v1/invoices/{invoice['id']}/payments", {"amount_minor": too_much, "reference": "r1"}),
        (f"/v1/invoices/{invoice['id']}/payments", {"amount_minor": 2**70, "reference": "r2"}),
        ("/v1/payments", {"amount_minor": 2**63 - 1, "reference": "r3", "buyer_org_id": s.commercial.principal.org_id}),
        (f"/v1/invoices/{invoice['id']}/credit-notes", {"amount_minor": too_much, "reason": "x"}),
    ]:
        response = market.client.post(path, headers=s.finance.headers, json=body)
        assert "less than or equal to 1000000000000" in assert_error(response, 422, "invalid_request")
    assert market.client.get("/v1/payments", headers=s.finance.headers).json()["items"] == []
    balances = market.client.get("/v1/ledger/balances", headers=s.finance.headers)
    assert balances.status_code == 200


def test_a_transfer_time_without_a_timezone_is_422(market: Market) -> None:
    # Before: the naive datetime reached the column type, which refuses naive times: 500.
    s = scene(market, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    response = market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=s.finance.headers,
        json={"amount_minor": 1, "reference": "r", "received_at": "2026-11-02T10:00:00"},
    )
    assert "received_at" in assert_error(response, 422, "invalid_request")


def test_limits_beyond_an_integer_are_422_and_forged_cursors_400(market: Market) -> None:
    finance = market.actor(Role.FINANCE)
    for path in ("/v1/invoices", "/v1/ledger/entries"):
        response = market.client.get(path, headers=finance.headers, params={"limit": 2**70})
        assert "query.limit" in assert_error(response, 422, "invalid_request")
        # A cursor whose key is an integer beyond any column, where the list orders by text and time.
        forged = base64.urlsafe_b64encode(json.dumps([2**70, 2**70, 2**70]).encode()).decode()
        assert_error(market.client.get(path, headers=finance.headers, params={"cursor": forged}), 400, "invalid_cursor")
