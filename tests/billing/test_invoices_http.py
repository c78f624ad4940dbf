"""Billing runs and invoices through HTTP: rating, idempotency, traceability, lifecycle, numbering."""

from __future__ import annotations

from market.accounts.models import Role
from tests.billing.helpers import SQL, invoices_of, run, scene, this_period, usage_total
from tests.conftest import Market
from tests.factories import query


def test_run_bills_each_buyer_once_and_rerun_changes_nothing(market: Market) -> None:
    s = scene(market, commercial_queries=3, public_queries=2)
    first = run(market, s.finance)
    assert first["invoices_created"] == 2
    mine = invoices_of(market, s.commercial)
    assert len(mine) == 1
    invoice = mine[0]
    assert invoice["status"] == "draft" and invoice["period"] == this_period()
    assert invoice["total_minor"] == usage_total(market, s.commercial) > 0
    assert invoice["buyer"]["id"] == s.commercial.principal.org_id
    billable = [line for line in invoice["lines"] if line["component"] == "billable"]
    assert billable and billable[0]["quantity"] == 3

    usage = market.client.get(billable[0]["usage_records"], headers=s.commercial.headers).json()["items"]
    assert len(usage) == 3 and sum(u["amount_minor"] for u in usage) == billable[0]["amount_minor"]

    public = invoices_of(market, s.public)[0]
    assert public["public_interest"] is True and public["total_minor"] == 0
    assert public["lines"][0]["component"] == "free_public" and public["lines"][0]["quantity"] == 2

    again = run(market, s.finance)
    assert again["invoices_created"] == 0 and again["lines_created"] == 0 and again["usage_linked"] == 0
    assert invoices_of(market, s.commercial) == mine

    assert query(market, s.commercial, s.listed.slug, SQL).status_code == 200
    third = run(market, s.finance)
    assert third["usage_linked"] == 1 and third["invoices_created"] == 0
    grown = invoices_of(market, s.commercial)[0]
    assert grown["id"] == invoice["id"] and grown["total_minor"] == usage_total(market, s.commercial)


def test_tenancy_buyer_sees_only_own_and_finance_sees_all(market: Market) -> None:
    s = scene(market)
    run(market, s.finance)
    assert len(invoices_of(market, s.finance)) == 2
    other = invoices_of(market, s.public)[0]
    response = market.client.get(f"/v1/invoices/{other['id']}", headers=s.commercial.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "invoice_not_found"
    denied = market.client.post("/v1/billing/runs", headers=s.commercial.headers, json={"period": this_period()})
    assert denied.status_code == 403
    operator = market.client.get("/v1/invoices", headers=s.listed.operator.headers)
    assert operator.status_code == 403


def test_bad_input_is_4xx(market: Market) -> None:
    finance = market.actor(Role.FINANCE)
    for body in ({"period": "2026-13"}, {"period": "nope"}, {}):
        response = market.client.post("/v1/billing/runs", headers=finance.headers, json=body)
        assert 400 <= response.status_code < 500, response.text
    assert market.client.get("/v1/invoices", headers=finance.headers, params={"status": "weird"}).status_code == 422
    assert market.client.post("/v1/invoices/inv_nope/finalize", headers=finance.headers).status_code == 404


def test_finalize_numbers_sequentially_and_freezes(market: Market) -> None:
    s = scene(market)
    run(market, s.finance)
    ids = [i["id"] for i in invoices_of(market, s.finance)]
    numbers = []
    for invoice_id in ids:
        response = market.client.post(f"/v1/invoices/{invoice_id}/finalize", headers=s.finance.headers)
        assert response.status_code == 200, response.text
        numbers.append(response.json()["number"])
    year = numbers[0][4:8]
    assert sorted(numbers) == [f"INV-{year}-000001", f"INV-{year}-000002"]
    again = market.client.post(f"/v1/invoices/{ids[0]}/finalize", headers=s.finance.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invoice_not_draft"

    # Usage after finalization waits for the next period, where it is an adjustment.
    before = invoices_of(market, s.commercial)[0]
    assert query(market, s.commercial, s.listed.slug, SQL).status_code == 200
    assert run(market, s.finance)["usage_linked"] == 0
    assert invoices_of(market, s.commercial)[0] == before
    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()})
    assert "usage_after_finalization" in {m["reason"] for m in recon.json()["mismatches"]}

    year_i, month_i = int(this_period()[:4]), int(this_period()[5:])
    nxt = f"{year_i + (month_i == 12):04d}-{month_i % 12 + 1:02d}"
    run(market, s.finance, nxt)
    later = invoices_of(market, s.commercial, period=nxt)[0]
    adjustment = [line for line in later["lines"] if line["source_period"] == this_period()]
    assert adjustment and adjustment[0]["quantity"] == 1 and "Adjustment" in adjustment[0]["description"]


def test_document_is_a_readable_invoice(market: Market) -> None:
    s = scene(market)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    page = market.client.get(invoice["document"], headers=s.commercial.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in (invoice["number"], "Seller", "Bill to", "Due date", "Total", "CNY", s.commercial.principal.org_name):
        assert text in page.text
    pdf = market.client.get(invoice["document"], headers=s.commercial.headers, params={"format": "pdf"})
    assert (
        pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    )
    bad = market.client.get(invoice["document"], headers=s.commercial.headers, params={"format": "doc"})
    assert bad.status_code == 422


def test_void_and_uncollectible(market: Market) -> None:
    s = scene(market)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    voided = market.client.post(
        f"/v1/invoices/{invoice['id']}/void", headers=s.finance.headers, json={"reason": "billed in error"}
    )
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    twice = market.client.post(
        f"/v1/invoices/{invoice['id']}/uncollectible", headers=s.finance.headers, json={"reason": "x"}
    )
    assert twice.status_code == 409


def test_monthly_fee_line_and_voided_invoice_in_reconciliation(market: Market) -> None:
    from tests.factories import PLANS

    plans = [PLANS[0], {**PLANS[1], "monthly_fee_minor": 5000}]
    s = scene(market, commercial_queries=1, public_queries=0, plans=plans)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    fee = [line for line in invoice["lines"] if line["component"] == "monthly_fee"]
    assert fee and fee[0]["amount_minor"] == 5000 and fee[0]["quantity"] == 1
    assert invoice["total_minor"] == 5000 + usage_total(market, s.commercial)
    assert run(market, s.finance)["lines_created"] == 0  # the fee is billed once per period

    voided = market.client.post(
        f"/v1/invoices/{invoice['id']}/void", headers=s.finance.headers, json={"reason": "wrong plan"}
    )
    assert voided.status_code == 200
    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    assert [m["reason"] for m in recon["mismatches"]] == ["invoice_voided"]
    assert recon["mismatches"][0]["objects"]["invoice"] == invoice["id"]
    long_ref = market.client.post(
        "/v1/payments",
        headers=s.finance.headers,
        json={"buyer_org_id": s.commercial.principal.org_id, "amount_minor": 1, "reference": "R" * 200},
    )
    assert long_ref.status_code == 201, long_ref.text
