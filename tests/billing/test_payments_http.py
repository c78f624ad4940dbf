"""Bank transfers, credit notes, revenue distribution, statements and the ledger, through HTTP."""

from __future__ import annotations

from typing import Any

from market.accounts.models import Role
from tests.billing.helpers import Scene, acknowledge_all, invoices_of, run, scene, this_period
from tests.conftest import Market


def _finalized(market: Market) -> tuple[Scene, dict[str, Any]]:
    s = scene(market, commercial_queries=3)
    run(market, s.finance, finalize=True)
    return s, invoices_of(market, s.commercial)[0]


def _transfer(market: Market, s: Scene, invoice_id: str, amount: int, reference: str) -> Any:
    return market.client.post(
        f"/v1/invoices/{invoice_id}/payments",
        headers=s.finance.headers,
        json={"amount_minor": amount, "reference": reference},
    )


def _balances(market: Market, s: Scene) -> dict[str, int]:
    rows = market.client.get("/v1/ledger/balances", headers=s.finance.headers).json()["items"]
    return {r["account"]: r["balance_minor"] for r in rows}


def test_partial_bank_transfers_pay_the_invoice(market: Market) -> None:
    s, invoice = _finalized(market)
    total = invoice["total_minor"]
    first = _transfer(market, s, invoice["id"], total // 3, "BOC-0001")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "succeeded"
    partly = invoices_of(market, s.commercial)[0]
    assert partly["status"] == "finalized" and partly["paid_minor"] == total // 3
    assert partly["due_minor"] == total - total // 3
    duplicate = _transfer(market, s, invoice["id"], 1, "BOC-0001")
    assert duplicate.status_code == 409
    assert _transfer(market, s, invoice["id"], total - total // 3, "BOC-0002").status_code == 201
    paid = invoices_of(market, s.commercial)[0]
    assert paid["status"] == "paid" and paid["due_minor"] == 0

    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    assert recon["paid_minor"] == total == recon["invoiced_minor"] == recon["distributed_minor"]
    assert recon["usage_billable_minor"] == total
    assert recon["paid_by_method"] == {"bank_transfer": total, "stripe": 0}
    assert recon["mismatches"] == []
    entries = market.client.get("/v1/ledger/entries", headers=s.finance.headers).json()["items"]
    assert {e["kind"] for e in entries} == {"invoice_finalized", "payment", "distribution"}
    assert all(sum(line["amount_minor"] for line in e["lines"]) == 0 for e in entries)

    balances = _balances(market, s)
    assert balances["cash:bank_transfer"] == total
    assert balances[f"receivable:{s.commercial.principal.org_id}"] == 0
    assert sum(balances.values()) == 0
    parties = [v for k, v in balances.items() if k.startswith("payable:") or k == "platform_revenue"]
    assert -sum(parties) == total


def test_bad_payments_are_refused(market: Market) -> None:
    s, invoice = _finalized(market)
    assert _transfer(market, s, invoice["id"], 0, "X").status_code == 422
    assert _transfer(market, s, invoice["id"], 10, " ").status_code == 422
    assert _transfer(market, s, "inv_missing", 10, "X").status_code == 404
    buyer_try = market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=s.commercial.headers,
        json={"amount_minor": 1, "reference": "x"},
    )
    assert buyer_try.status_code == 403
    no_stripe = market.client.post(
        f"/v1/invoices/{invoice['id']}/pay", headers=s.commercial.headers, json={"payment_method": "pm_card_visa"}
    )
    assert no_stripe.status_code == 503 and no_stripe.json()["error"]["code"] == "stripe_not_configured"


def test_revenue_shares_split_payments_and_statements(market: Market) -> None:
    s = scene(market, commercial_queries=0)
    source = market.actor(Role.SOURCE)
    regulator = s.listed.regulator
    shares = {
        "shares": [
            {"party": "source", "org_id": source.principal.org_id, "basis_points": 3333},
            {"party": "operator", "basis_points": 5667},
            {"party": "platform", "basis_points": 1000},
        ]
    }
    bad = market.client.put(
        f"/v1/products/{s.listed.slug}/revenue-shares",
        headers=regulator.headers,
        json={"shares": [{"party": "operator", "basis_points": 9000}]},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "shares_must_sum"
    assert (
        market.client.put(
            f"/v1/products/{s.listed.slug}/revenue-shares", headers=s.commercial.headers, json=shares
        ).status_code
        == 403
    )
    ok = market.client.put(f"/v1/products/{s.listed.slug}/revenue-shares", headers=regulator.headers, json=shares)
    assert ok.status_code == 200, ok.text
    assert ok.json()["product"] == s.listed.slug and len(ok.json()["shares"]) == len(shares["shares"])
    # A new agreement freezes these shares.
    from tests.billing.helpers import SQL
    from tests.factories import grant, query

    buyer = market.actor(Role.BUYER)
    grant(market, s.listed, buyer, purpose="commercial", plan="standard")
    for _ in range(3):
        assert query(market, buyer, s.listed.slug, SQL).status_code == 200
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, buyer)[0]
    assert _transfer(market, s, invoice["id"], invoice["total_minor"], "ICBC-9").status_code == 201

    statements = market.client.get(
        "/v1/settlements", headers=s.finance.headers, params={"period": this_period()}
    ).json()["items"]
    by_party = {st["party"]: st["amount_minor"] for st in statements}
    assert sum(by_party.values()) == invoice["total_minor"]
    assert (
        by_party["source"] == invoice["total_minor"] * 3333 // 10000
        or abs(by_party["source"] - invoice["total_minor"] * 3333 / 10000) < 1
    )
    own = market.client.get("/v1/settlements", headers=source.headers, params={"period": this_period()}).json()["items"]
    assert [st["party"] for st in own] == ["source"]
    operator = market.client.get("/v1/settlements", headers=s.listed.operator.headers, params={"period": this_period()})
    assert [st["party"] for st in operator.json()["items"]] == ["operator"]
    assert operator.json()["items"][0]["year_to_date_minor"] > 0
    assert (
        market.client.get("/v1/settlements", headers=buyer.headers, params={"period": this_period()}).status_code == 403
    )


def test_credit_note_with_bank_refund_and_overpayment(market: Market) -> None:
    s, invoice = _finalized(market)
    total = invoice["total_minor"]
    assert _transfer(market, s, invoice["id"], total + 50, "BOC-over").status_code == 201
    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    assert [(m["reason"], m["amount_minor"]) for m in recon["mismatches"]] == [("overpaid", 50)]

    note = market.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        headers=s.finance.headers,
        json={"amount_minor": 100, "reason": "one query failed on our side", "refund_minor": 150, "reference": "x"},
    )
    assert note.status_code == 422
    note = market.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        headers=s.finance.headers,
        json={"amount_minor": 100, "reason": "goodwill", "refund_minor": 100, "reference": "BOC-R1"},
    )
    assert note.status_code == 201, note.text
    assert note.json()["number"].startswith("CN-")
    after = invoices_of(market, s.commercial)[0]
    assert after["credited_minor"] == 100 and after["paid_minor"] == total + 50 - 100
    assert after["total_minor"] == total  # a finalized invoice never changes
    balances = _balances(market, s)
    assert balances["credit_notes"] == 100 and sum(balances.values()) == 0
    # 50 still overpaid: refund it through another credit note? No: nothing left to credit beyond the total.
    too_much = market.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        headers=s.finance.headers,
        json={"amount_minor": total, "reason": "x"},
    )
    assert too_much.status_code == 422


def test_paid_with_no_invoice_and_closing(market: Market) -> None:
    s, invoice = _finalized(market)
    unapplied = market.client.post(
        "/v1/payments",
        headers=s.finance.headers,
        json={
            "buyer_org_id": s.commercial.principal.org_id,
            "amount_minor": 777,
            "reference": "CCB-unknown",
            "received_at": f"{this_period()}-20T10:00:00Z",
        },
    )
    assert unapplied.status_code == 201, unapplied.text
    recon = market.client.get("/v1/reconciliation", headers=s.finance.headers, params={"period": this_period()}).json()
    reasons = {m["reason"]: m for m in recon["mismatches"]}
    assert set(reasons) == {"unpaid", "paid_with_no_invoice"}
    assert reasons["unpaid"]["objects"]["invoice"] == invoice["id"]
    assert reasons["paid_with_no_invoice"]["objects"]["payment"] == unapplied.json()["id"]

    csv = market.client.get(
        "/v1/reconciliation/export", headers=s.finance.headers, params={"period": this_period(), "format": "csv"}
    )
    assert csv.status_code == 200 and "paid_with_no_invoice" in csv.text
    xlsx = market.client.get(
        "/v1/reconciliation/export", headers=s.finance.headers, params={"period": this_period(), "format": "xlsx"}
    )
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert (
        market.client.get(
            "/v1/reconciliation", headers=s.commercial.headers, params={"period": this_period()}
        ).status_code
        == 403
    )

    closed = market.client.post(f"/v1/billing/periods/{this_period()}/close", headers=s.finance.headers)
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "period_has_open_mismatches"
    assert sorted(acknowledge_all(market, s.finance, this_period())) == ["paid_with_no_invoice", "unpaid"]
    closed = market.client.post(f"/v1/billing/periods/{this_period()}/close", headers=s.finance.headers)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    rerun = market.client.post("/v1/billing/runs", headers=s.finance.headers, json={"period": this_period()})
    assert rerun.status_code == 409 and rerun.json()["error"]["code"] == "period_closed"
    void = market.client.post(f"/v1/invoices/{invoice['id']}/void", headers=s.finance.headers, json={"reason": "x"})
    assert void.status_code == 409


def test_credit_notes_listing_roles_and_operator_ceiling(market: Market) -> None:
    s, invoice = _finalized(market)
    body = {"amount_minor": 10, "reason": "rounding goodwill"}
    assert (
        market.client.post(
            f"/v1/invoices/{invoice['id']}/credit-notes", headers=s.commercial.headers, json=body
        ).status_code
        == 403
    )
    assert (
        market.client.post(
            f"/v1/invoices/{invoice['id']}/credit-notes", headers=s.finance.headers, json=body
        ).status_code
        == 201
    )
    mine = market.client.get("/v1/credit-notes", headers=s.commercial.headers).json()["items"]
    assert [n["invoice_id"] for n in mine] == [invoice["id"]]
    assert market.client.get("/v1/credit-notes", headers=s.public.headers).json()["items"] == []
    webhook = market.client.post("/v1/stripe/webhook", content=b"{}")
    assert webhook.status_code == 503 and webhook.json()["error"]["code"] == "stripe_not_configured"

    assert _transfer(market, s, invoice["id"], invoice["total_minor"] - 10, "BOC-c").status_code == 201
    from sqlalchemy import update

    from products.governance.models import Authorisation

    operator = s.listed.operator.principal.org_id
    with market.database.transaction() as session:  # the deprecated per-grant ceiling is no longer read
        session.execute(
            update(Authorisation).where(Authorisation.operator_org_id == operator).values(revenue_ceiling_minor=1)
        )
    year = this_period()[:4]

    def statement() -> dict[str, Any]:
        found = market.client.get(
            "/v1/settlements", headers=s.listed.operator.headers, params={"period": this_period()}
        )
        (only,) = found.json()["items"]
        return dict(only)

    assert (statement()["ceiling_minor"], statement()["over_ceiling"], statement()["warning"]) == (None, False, None)
    # One rule: the statement holds the operator's revenue against its allowed revenue, as that page shows it.
    figures = {"platform_cost_minor": 1, "collection_cost_minor": 0, "processing_cost_minor": 0}
    figures |= {"staff_cost_minor": 0, "subsidies_minor": 0, "profit_minor": 0, "taxes_minor": 0, "currency": "CNY"}
    recorded = market.client.put(
        f"/v1/allowed-revenue/{operator}/{year}", headers=s.listed.regulator.headers, json=figures
    )
    assert recorded.status_code == 200, recorded.text
    allowed = market.client.get(f"/v1/allowed-revenue/{operator}/{year}", headers=s.listed.operator.headers).json()
    shown = statement()
    assert (shown["ceiling_minor"], shown["year_to_date_minor"]) == (
        allowed["allowed_minor"],
        allowed["received_minor"],
    )
    assert shown["over_ceiling"] is True and shown["warning"] == allowed["warning"] == "exceeded"
    assert shown["used_basis_points"] == allowed["used_basis_points"]
