"""Finance's console pages over HTTP (as a browser sends them): a period from billing run to close, invoices
with filters, a partial bank transfer, a credit note, reconciliation with its exports, the ledger, statements
and charts; the guards' messages in place; other roles refused."""

from __future__ import annotations

import csv
import io
import re

import pytest
from openpyxl import load_workbook

from market.accounts.models import Role
from tests.billing.helpers import end_period, invoices_of, scene, this_period
from tests.conftest import Market
from tests.console.helpers import csrf_of, post_form, sign_in

pytestmark = pytest.mark.usefixtures("billed_period_clock")
EN = {"Accept-Language": "en"}


def state_of(client, period: str) -> str:  # type: ignore[no-untyped-def]
    found = re.search(
        r'id="period-state"><span class="status status-(\w+)"', client.get(f"/console/finance/periods/{period}").text
    )
    assert found, "the period page shows its state"
    return found.group(1)


def test_a_period_from_billing_run_to_close_in_the_finance_pages(market: Market) -> None:
    s = scene(market, commercial_queries=2, public_queries=1)
    period = this_period()
    early = sign_in(market, s.finance)
    early.headers.update(EN)
    refused = post_form(early, f"/console/finance/periods/{period}", f"/console/finance/periods/{period}/run", {})
    assert refused.status_code == 409 and "has not ended" in refused.text and 'role="alert"' in refused.text
    end_period()
    client = sign_in(market, s.finance)
    client.headers.update(EN)

    listing = client.get("/console/finance/periods")
    assert listing.status_code == 200 and f'href="/console/finance/periods/{period}"' in listing.text
    assert state_of(client, period) == "ended"
    ran = post_form(client, f"/console/finance/periods/{period}", f"/console/finance/periods/{period}/run", {})
    assert ran.status_code == 303 and "done=run" in ran.headers["location"]
    assert state_of(client, period) == "billed"
    done = post_form(client, f"/console/finance/periods/{period}", f"/console/finance/periods/{period}/finalize", {})
    assert done.status_code == 303
    assert state_of(client, period) == "finalized"

    invoice = next(i for i in invoices_of(market, s.finance) if not i["public_interest"])
    total = invoice["total_minor"]
    shown = client.get("/console/finance/invoices", params={"state": "finalized", "buyer": invoice["buyer"]["id"]})
    assert f'/console/finance/invoices/{invoice["id"]}"' in shown.text
    above = client.get("/console/finance/invoices", params={"min_amount": f"{total / 100 + 1:.2f}"})
    assert f'/console/finance/invoices/{invoice["id"]}"' not in above.text
    bad = client.get("/console/finance/invoices", params={"min_amount": "twelve"})
    assert 'id="min_amount-error"' in bad.text

    page = f"/console/finance/invoices/{invoice['id']}"
    detail = client.get(page)
    assert "/lines/" in detail.text and 'class="tag missing"' in detail.text  # the buyer's tax ID is not on file
    missing = post_form(client, page, f"{page}/transfers", {"amount": "1.00", "reference": ""})
    assert missing.status_code == 422 and 'id="reference-error"' in missing.text
    partial = post_form(client, page, f"{page}/transfers", {"amount": f"{total / 200:.2f}", "reference": "ICBC-0001"})
    assert partial.status_code == 303
    after = next(i for i in invoices_of(market, s.finance) if i["id"] == invoice["id"])
    assert after["paid_minor"] == total // 2 and after["status"] == "finalized"
    too_much = post_form(client, page, f"{page}/credit-notes", {"credit_amount": f"{total:.2f}", "reason": "x"})
    assert too_much.status_code == 422 and 'id="credit_amount-error"' in too_much.text
    credited = post_form(client, page, f"{page}/credit-notes", {"credit_amount": "0.01", "reason": "rounding"})
    assert credited.status_code == 303

    # Reconciliation: the unpaid half is a mismatch; closing is refused until finance acknowledges it.
    recon = client.get(f"/console/finance/periods/{period}")
    assert 'id="mismatch-table"' in recon.text and f'href="/console/finance/invoices/{invoice["id"]}"' in recon.text
    refused = post_form(client, f"/console/finance/periods/{period}", f"/console/finance/periods/{period}/close", {})
    assert refused.status_code == 409 and "open reconciliation mismatches" in refused.text
    empty_note = post_form(
        client,
        f"/console/finance/periods/{period}",
        f"/console/finance/periods/{period}/acknowledge",
        {"mismatch_key": "x" * 32, "note": " "},
    )
    assert empty_note.status_code == 422 and 'role="alert"' in empty_note.text
    for key in set(re.findall(r'name="mismatch_key" value="(\w+)"', recon.text)):
        acked = post_form(
            client,
            f"/console/finance/periods/{period}",
            f"/console/finance/periods/{period}/acknowledge",
            {"mismatch_key": key, "note": "paid in the next month, agreed with the buyer"},
        )
        assert acked.status_code == 303, acked.text
    exported = client.get(f"/console/finance/periods/{period}/reconciliation.csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert any(r[0] == "mismatch" and r[8] == "paid in the next month, agreed with the buyer" for r in rows)
    book = load_workbook(io.BytesIO(client.get(f"/console/finance/periods/{period}/reconciliation.xlsx").content))
    assert book.active is not None and book.active.max_row == len(rows)
    closed = post_form(client, f"/console/finance/periods/{period}", f"/console/finance/periods/{period}/close", {})
    assert closed.status_code == 303
    assert state_of(client, period) == "closed"
    assert "/acknowledge" not in client.get(f"/console/finance/periods/{period}").text

    for path in (
        "/console/finance/payments",
        "/console/finance/ledger",
        f"/console/finance/statements?period={period}",
        "/console/finance/charts",
    ):
        assert client.get(path).status_code == 200, path
    assert "ICBC-0001" in client.get("/console/finance/payments").text
    ledger = client.get("/console/finance/ledger", params={"reference": invoice["id"]})
    assert invoice["id"] in ledger.text
    charts = client.get("/console/finance/charts")
    assert 'data-chart="trend-data"' in charts.text and period in charts.text


def test_other_roles_cannot_open_finance_pages(market: Market) -> None:
    s = scene(market, commercial_queries=1, public_queries=0)
    end_period()
    assert (
        post_form(
            sign_in(market, s.finance), "/console/finance/periods", f"/console/finance/periods/{this_period()}/run", {}
        ).status_code
        == 303
    )
    invoice = invoices_of(market, s.finance)[0]
    for role in (Role.BUYER, Role.OPERATOR, Role.ADMIN):
        client = sign_in(market, market.actor(role))
        for path in (
            "/console/finance/periods",
            f"/console/finance/periods/{this_period()}",
            f"/console/finance/periods/{this_period()}/reconciliation.csv",
            "/console/finance/invoices",
            f"/console/finance/invoices/{invoice['id']}",
            "/console/finance/payments",
            "/console/finance/ledger",
            "/console/finance/statements",
            "/console/finance/charts",
        ):
            response = client.get(path)
            assert response.status_code in (403, 404), (role, path, response.status_code)
            assert 'id="invoice-facts"' not in response.text and "<table" not in response.text
        token = csrf_of(client.get("/console/invoices" if role == Role.BUYER else "/").text)
        for action in (
            f"/console/finance/periods/{this_period()}/close",
            f"/console/finance/invoices/{invoice['id']}/transfers",
        ):
            response = client.post(action, data={"csrf_token": token, "amount": "1", "reference": "x"})
            assert response.status_code in (403, 404), (role, action)
    assert invoices_of(market, s.finance)[0]["paid_minor"] == 0
