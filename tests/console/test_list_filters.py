"""The list pages' filters (market/console/filters.py) over HTTP: dates as YYYY-MM-DD with the refusal shown on
the page, a range in order, amounts per field, and the filters kept as typed in the form."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.console.helpers import sign_in

AUDIT = "/console/regulator/audit"


def test_the_audit_logs_dates_are_read_and_refused_in_the_page(market: Market) -> None:
    client = sign_in(market, market.actor(Role.REGULATOR))
    client.headers["Accept-Language"] = "en"
    bad = client.get(AUDIT, params={"from": "yesterday", "product": "trips"})
    assert bad.status_code == 422 and "yesterday" in bad.text
    assert 'value="trips"' in bad.text  # the other filters stay as typed
    backwards = client.get(AUDIT, params={"from": "2031-02-01", "to": "2031-01-01"})
    assert backwards.status_code == 400
    fine = client.get(AUDIT, params={"from": "2031-01-01", "to": "2031-01-01", "flagged": "yes"})
    assert fine.status_code == 200 and 'value="2031-01-01"' in fine.text and "checked" in fine.text
    assert client.get("/console/regulator/dashboard", params={"from": "someday"}).status_code == 422


def test_the_invoice_lists_amounts_are_refused_next_to_their_field(market: Market) -> None:
    client = sign_in(market, market.actor(Role.FINANCE))
    client.headers["Accept-Language"] = "en"
    shown = client.get("/console/finance/invoices", params={"min_amount": "12.5", "max_amount": "lots"})
    assert shown.status_code == 200
    assert 'id="max_amount-error"' in shown.text and 'id="min_amount-error"' not in shown.text
    assert 'value="12.5"' in shown.text and 'value="lots"' in shown.text


def test_a_notice_is_found_by_its_code(market: Market) -> None:
    client = sign_in(market, market.actor(Role.BUYER))
    assert client.get("/console/notices", params={"code": "x" * 500}).status_code == 200
