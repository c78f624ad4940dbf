"""Hypothesis: for random usage, shares and payments, the money adds up and reconciliation tells
the truth (no mismatch when nothing is wrong; the injected fault when something is)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from billing import finance_repository, invoices, ledger, payments, rating, reconciliation, repository
from billing.config import Period
from billing.models import Distribution, Invoice, InvoiceLine, Payment
from billing.revenue import Share, split_payment
from market.accounts.models import Role
from market.clock import new_id
from metering.models import Agreement, UsageRecord
from tests.billing.helpers import scene
from tests.conftest import Market

PROPERTY_SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    weights=st.dictionaries(st.sampled_from("abcdef"), st.integers(min_value=0, max_value=10**9), min_size=1),
    shares=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5),
)
def test_shares_add_up_exactly_to_the_payment(amount: int, weights: dict[str, int], shares: list[int]) -> None:
    if sum(shares) == 0:
        shares = [*shares[:-1], 1]
    split = {a: [Share("source", f"org{i}", bps) for i, bps in enumerate(shares)] for a in weights}
    parts = split_payment(weights, split, amount)
    if any(w > 0 for w in weights.values()):
        assert sum(p for _, _, p in parts) == amount
    else:
        assert parts == []


@given(st.lists(st.integers(min_value=-(10**9), max_value=10**9), min_size=1, max_size=6))
def test_unbalanced_journal_entries_are_refused(amounts: list[int]) -> None:
    lines = [(f"acct{i}", a) for i, a in enumerate(amounts)]
    if sum(amounts) != 0:
        with pytest.raises(ledger.UnbalancedEntry):
            ledger.record(None, kind="t", reference="r", period="2026-01", currency="CNY", lines=lines)  # type: ignore[arg-type]


_months = itertools.count()
_chain = itertools.count()


def _fresh_period() -> Period:
    n = next(_months)
    return Period.parse(f"{1900 + n // 12:04d}-{n % 12 + 1:02d}", 1)


def _add_usage(session: Any, agreement: Agreement, period: Period, amounts: list[tuple[str, int]]) -> None:
    start = period.start
    rows = []
    for i, (charge_type, amount) in enumerate(amounts):
        rows.append(
            {
                "id": new_id("qry"),
                "agreement_id": agreement.id,
                "buyer_org_id": agreement.buyer_org_id,
                "user_id": _any_user(session, agreement.buyer_org_id),
                "product_id": agreement.product_id,
                "product_version_id": agreement.product_version_id,
                "purpose": agreement.purpose,
                "sql": "SELECT 1",
                "sql_run": "",
                "rows_scanned": 0,
                "bytes_scanned": 1000 * i,
                "cpu_ms": 0,
                "result_rows": 0,
                "result_columns": [],
                "suppressed_groups": 0,
                "charge_type": charge_type,
                "amount_minor": amount if charge_type == "billable" else 0,
                "currency": agreement.currency,
                "month": period.key,
                "created_at": start.replace(day=1 + i % 27, tzinfo=UTC),
                # Unique per buyer; these synthetic records are not part of a verifiable hash chain.
                "chain_seq": 10**9 + next(_chain),
            }
        )
    session.execute(UsageRecord.__table__.insert(), rows)


def _any_user(session: Any, org_id: str) -> str:
    from market.accounts.models import User

    return str(session.scalar(select(User.id).where(User.org_id == org_id)))


usage_lists = st.lists(
    st.tuples(st.sampled_from(["billable", "billable", "trial", "cap_reached", "rejected"]), st.integers(0, 50_000)),
    min_size=1,
    max_size=12,
)
faults = st.sampled_from(
    [None, "unpaid", "overpaid", "paid_with_no_invoice", "usage_after_finalization", "line_usage_mismatch"]
)


@PROPERTY_SETTINGS
@given(usage_a=usage_lists, usage_b=usage_lists, fault=faults)
def test_money_adds_up_and_reconciliation_names_the_fault(
    market: Market, usage_a: list[tuple[str, int]], usage_b: list[tuple[str, int]], fault: str | None
) -> None:
    if not hasattr(market, "_scene"):
        market._scene = scene(market, commercial_queries=0, public_queries=0)  # type: ignore[attr-defined]
    s = market._scene  # type: ignore[attr-defined]
    usage_a = [*usage_a, ("billable", 1)]  # buyer A always owes something, so a fault can be injected
    finance = s.finance.principal
    period = _fresh_period()
    with market.database.transaction() as session:
        agreements = {a.buyer_org_id: a for a in session.scalars(select(Agreement))}
        buyer_a, buyer_b = s.commercial.principal.org_id, s.public.principal.org_id
        _add_usage(session, agreements[buyer_a], period, usage_a)
        _add_usage(session, agreements[buyer_b], period, usage_b)
    with market.database.transaction() as session:
        rating.run_period(session, period)
        finalized = invoices.finalize_period(session, finance, period)
        # Invoice totals equal rated usage.
        for invoice in finalized:
            usage = usage_a if invoice.buyer_org_id == buyer_a else usage_b
            lines = repository.lines_of(session, [invoice.id])
            # Examples share one database: an earlier example's late usage is an adjustment here.
            assert sum(x.amount_minor for x in lines if x.source_period == period.key) == sum(
                a for t, a in usage if t == "billable"
            )
            assert invoice.total_minor == sum(x.amount_minor for x in lines)
    with market.database.transaction() as session:
        for invoice in repository.invoices_of_period(session, period.key):
            due = invoices.due_minor(invoice)
            if fault == "unpaid" and invoice.buyer_org_id == buyer_a:
                due -= 1
            if fault == "overpaid" and invoice.buyer_org_id == buyer_a:
                due += 7
            if due > 0:
                payments.record_bank_transfer(
                    session,
                    finance,
                    invoice_id=invoice.id,
                    buyer_org_id=None,
                    amount_minor=due,
                    currency=None,
                    reference=f"ref-{invoice.id}",
                    received_at=period.start,
                )
        if fault == "paid_with_no_invoice":
            payments.record_bank_transfer(
                session,
                finance,
                invoice_id=None,
                buyer_org_id=buyer_b,
                amount_minor=123,
                currency="CNY",
                reference=f"stray-{period.key}",
                received_at=period.start,
            )
        if fault == "usage_after_finalization":
            _add_usage(session, agreements[buyer_a], period, [("billable", 5)])
        if fault == "line_usage_mismatch":
            line_id = session.scalar(
                select(InvoiceLine.id)
                .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                .where(Invoice.period == period.key)
            )
            session.execute(
                update(InvoiceLine).where(InvoiceLine.id == line_id).values(amount_minor=InvoiceLine.amount_minor + 1)
            )
    with market.database.transaction() as session:
        # Shares add up exactly to payments.
        paid = session.scalars(
            select(Payment).where(Payment.invoice_id.is_not(None), Payment.status == "succeeded")
        ).all()
        for payment in paid:
            parts = session.scalars(
                select(Distribution.amount_minor).where(Distribution.payment_id == payment.id)
            ).all()
            if parts:
                assert sum(parts) == payment.amount_minor
        # Every journal entry balances.
        assert finance_repository.unbalanced_entries(session) == []
        report = reconciliation.reconcile(session, finance, period)
    reasons = {m.reason for m in report.mismatches}
    if fault is None:
        assert report.mismatches == []
        assert report.invoiced_minor - report.adjustments_minor == report.usage_billable_minor
        assert report.invoiced_minor == report.paid_minor == report.distributed_minor
    else:
        assert fault in reasons, (fault, report.mismatches)
        if fault == "line_usage_mismatch":
            assert reasons <= {"line_usage_mismatch", "invoice_total_mismatch", "unpaid"}
        else:
            assert reasons == {fault}


def test_roles_needed(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    assert market.client.get("/v1/ledger/balances", headers=buyer.headers).status_code == 403
    assert market.client.get("/v1/billing/periods", headers=buyer.headers).status_code == 403
    _ = datetime.now(UTC)
