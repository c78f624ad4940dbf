"""Hypothesis injects the faults an insider or a bug could leave in the books (issue 10 items 4 and 8),
one at a time into a clean period, and reconciliation must name each one, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, delete, insert, select, text, update

from billing import invoices, payments, rating, reconciliation, repository
from billing.models import (
    Distribution,
    Invoice,
    InvoiceLine,
    InvoiceLineUsage,
    JournalEntry,
    JournalLine,
    Payment,
)
from market.clock import new_id, utcnow
from metering.models import Agreement
from tests.billing.helpers import scene
from tests.billing.test_properties import PROPERTY_SETTINGS, _add_usage, _fresh_period, usage_lists
from tests.conftest import Market

FAULT_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""Each example builds a period end to end: no shrinking (a failure prints its example anyway)."""

FAULTS: dict[str, set[str]] = {
    # fault -> the reasons reconciliation must report (at least these)
    "balanced_journal_edit": {"journal_entry_mismatch"},
    "deleted_payment_entry": {"journal_entry_missing", "ledger_cash_mismatch", "ledger_receivable_mismatch"},
    "platform_share_moved": {"journal_entry_mismatch", "ledger_payable_mismatch"},
    "paid_minor_raised": {"paid_minor_mismatch", "overpaid"},
    "payment_invoice_missing": {"payment_orphan"},
    "payment_date_missing": {"payment_undated"},
    "link_deleted": {"usage_link_missing"},
    "finalization_entry_duplicated": {"journal_entry_duplicate", "ledger_receivable_mismatch"},
    "finalization_entry_edited": {"journal_entry_mismatch", "ledger_receivable_mismatch"},
    "orphan_journal_entry": {"journal_entry_orphan"},
    "orphan_usage_link": {"usage_link_orphan"},
    "fee_line_for_free_agreement": {"monthly_fee_unexpected", "invoice_total_mismatch"},
    "distribution_entry_deleted": {"journal_entry_missing", "ledger_payable_mismatch"},
    "receivable_moved_to_other_buyer": {"journal_entry_mismatch", "ledger_receivable_mismatch"},
    # An insider moves the platform's part of a payment to the operator in the distribution AND in
    # its journal entry, so that the journal agrees with the sub-ledger: the period's split does not.
    "distribution_and_entry_moved": {"distribution_mismatch"},
}


def _unchecked(connection: Connection) -> None:
    """Switch off foreign keys for this connection, as an insider with database rights can."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET session_replication_role = replica"))
    else:
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")


def _inject(market: Market, fault: str, period: str, buyer_a: str, pick: int, amount: int) -> None:
    with market.database.engine.begin() as connection:
        _unchecked(connection)
        inv_a = connection.execute(
            select(Invoice.id, Invoice.buyer_org_id).where(Invoice.period == period, Invoice.buyer_org_id == buyer_a)
        ).one()[0]
        pay_a = connection.execute(select(Payment.id).where(Payment.invoice_id == inv_a)).scalars().first()
        entries = connection.execute(
            select(JournalEntry.id, JournalEntry.kind, JournalEntry.reference).where(JournalEntry.period == period)
        ).all()
        lines = connection.execute(
            select(JournalLine.id, JournalLine.entry_id, JournalLine.account)
            .where(JournalLine.entry_id.in_([e[0] for e in entries]))
            .order_by(JournalLine.id)
        ).all()

        def entry(kind: str, reference: str) -> str:
            return next(e[0] for e in entries if e[1] == kind and e[2] == reference)

        def add_line(line_id: int, delta: int) -> None:
            connection.execute(
                update(JournalLine)
                .where(JournalLine.id == line_id)
                .values(amount_minor=JournalLine.amount_minor + delta)
            )

        if fault == "balanced_journal_edit":
            # Two lines of one entry, so that every entry still balances (what went unnoticed before).
            first = lines[pick % len(lines)]
            second = next(x for x in lines if x[1] == first[1] and x[0] != first[0])
            add_line(first[0], amount)
            add_line(second[0], -amount)
        elif fault == "deleted_payment_entry":
            gone = entry("payment", str(pay_a))
            connection.execute(delete(JournalLine).where(JournalLine.entry_id == gone))
            connection.execute(delete(JournalEntry).where(JournalEntry.id == gone))
        elif fault == "platform_share_moved":
            moved = entry("distribution", str(pay_a))
            operator = connection.execute(
                select(JournalLine.account).where(JournalLine.account.like("payable:operator:%"))
            ).scalar()
            connection.execute(
                update(JournalLine)
                .where(JournalLine.entry_id == moved, JournalLine.account == "platform_revenue")
                .values(account=operator)
            )
        elif fault == "paid_minor_raised":
            connection.execute(
                update(Invoice).where(Invoice.id == inv_a).values(paid_minor=Invoice.paid_minor + amount)
            )
        elif fault == "payment_invoice_missing":
            connection.execute(update(Payment).where(Payment.id == pay_a).values(invoice_id="inv_" + "0" * 20))
        elif fault == "payment_date_missing":
            connection.execute(update(Payment).where(Payment.id == pay_a).values(received_at=None))
        elif fault == "link_deleted":
            links = (
                connection.execute(
                    select(InvoiceLineUsage.usage_record_id)
                    .join(InvoiceLine, InvoiceLine.id == InvoiceLineUsage.line_id)
                    .where(InvoiceLine.invoice_id == inv_a)
                    .order_by(InvoiceLineUsage.usage_record_id)
                )
                .scalars()
                .all()
            )
            gone_link = links[pick % len(links)]
            connection.execute(delete(InvoiceLineUsage).where(InvoiceLineUsage.usage_record_id == gone_link))
        elif fault in ("finalization_entry_duplicated", "finalization_entry_edited"):
            original = entry("invoice_finalized", inv_a)
            if fault == "finalization_entry_edited":
                for line in (x for x in lines if x[1] == original):
                    add_line(line[0], amount if line[2].startswith("receivable:") else -amount)
            else:
                copy = new_id("jen")
                row = connection.execute(select(JournalEntry).where(JournalEntry.id == original)).mappings().one()
                connection.execute(insert(JournalEntry).values({**row, "id": copy}))
                for line in connection.execute(
                    select(JournalLine.account, JournalLine.amount_minor).where(JournalLine.entry_id == original)
                ):
                    connection.execute(insert(JournalLine).values(entry_id=copy, account=line[0], amount_minor=line[1]))
        elif fault == "orphan_journal_entry":
            ghost = new_id("jen")
            connection.execute(
                insert(JournalEntry).values(
                    id=ghost,
                    kind="payment",
                    reference="pay_ghost",
                    period=period,
                    currency="CNY",
                    memo="",
                    created_at=utcnow(),
                )
            )
            connection.execute(
                insert(JournalLine).values(entry_id=ghost, account="cash:bank_transfer", amount_minor=amount)
            )
            connection.execute(
                insert(JournalLine).values(entry_id=ghost, account="platform_revenue", amount_minor=-amount)
            )
        elif fault == "orphan_usage_link":
            line_id = (
                connection.execute(select(InvoiceLine.id).where(InvoiceLine.invoice_id == inv_a)).scalars().first()
            )
            connection.execute(insert(InvoiceLineUsage).values(usage_record_id=new_id("qry"), line_id=line_id))
        elif fault == "fee_line_for_free_agreement":
            public = connection.execute(
                select(Agreement.id, Agreement.product_id).where(Agreement.buyer_org_id != buyer_a)
            ).first()
            assert public is not None
            connection.execute(
                insert(InvoiceLine).values(
                    id=new_id("inl"),
                    invoice_id=inv_a,
                    agreement_id=public[0],
                    product_id=public[1],
                    component="monthly_fee",
                    source_period=period,
                    quantity=1,
                    bytes_scanned=0,
                    unit_price_minor=amount,
                    amount_minor=amount,
                    description="Monthly fee",
                )
            )
        elif fault == "distribution_entry_deleted":
            gone = entry("distribution", str(pay_a))
            connection.execute(delete(JournalLine).where(JournalLine.entry_id == gone))
            connection.execute(delete(JournalEntry).where(JournalEntry.id == gone))
        elif fault == "distribution_and_entry_moved":
            platform = connection.execute(
                select(Distribution.id, Distribution.agreement_id, Distribution.amount_minor).where(
                    Distribution.payment_id == pay_a, Distribution.party_kind == "platform"
                )
            ).first()
            assert platform is not None and platform[2] > 0
            operator_org = connection.execute(
                select(Distribution.party_org_id).where(
                    Distribution.payment_id == pay_a, Distribution.party_kind == "operator"
                )
            ).scalar()
            connection.execute(
                update(Distribution)
                .where(Distribution.id == platform[0])
                .values(party_kind="operator", party_org_id=operator_org)
            )
            connection.execute(
                update(JournalLine)
                .where(
                    JournalLine.entry_id == entry("distribution", str(pay_a)), JournalLine.account == "platform_revenue"
                )
                .values(account=f"payable:operator:{operator_org}")
            )
        elif fault == "receivable_moved_to_other_buyer":
            connection.execute(
                update(JournalLine)
                .where(
                    JournalLine.entry_id == entry("invoice_finalized", inv_a), JournalLine.account.like("receivable:%")
                )
                .values(account="receivable:org_someone_else")
            )


@pytest.mark.parametrize("fault", sorted(FAULTS))
@FAULT_SETTINGS
@given(usage_a=usage_lists, usage_b=usage_lists, pick=st.integers(0, 10_000), amount=st.integers(1, 5_000))
def test_every_injected_fault_is_named(
    market: Market, usage_a: list[tuple[str, int]], usage_b: list[tuple[str, int]], fault: str, pick: int, amount: int
) -> None:
    if not hasattr(market, "_scene"):
        market._scene = scene(market, commercial_queries=0, public_queries=0)  # type: ignore[attr-defined]
    s = market._scene  # type: ignore[attr-defined]
    finance = s.finance.principal
    period = _fresh_period()
    buyer_a, buyer_b = s.commercial.principal.org_id, s.public.principal.org_id
    with market.database.transaction() as session:
        agreements = {a.buyer_org_id: a for a in session.scalars(select(Agreement))}
        # Buyer A always owes enough that every party's share of its payment is at least 1 fen.
        _add_usage(session, agreements[buyer_a], period, [*usage_a, ("billable", 100)])
        _add_usage(session, agreements[buyer_b], period, usage_b)
    with market.database.transaction() as session:
        rating.run_period(session, period)
        invoices.finalize_period(session, finance, period)
    with market.database.transaction() as session:
        for invoice in repository.invoices_of_period(session, period.key):
            if invoices.due_minor(invoice) > 0:
                _pay(session, finance, invoice, period)
    with market.database.transaction() as session:
        clean = reconciliation.reconcile(session, finance, period)
    assert clean.mismatches == [], clean.mismatches

    _inject(market, fault, period.key, buyer_a, pick, amount)
    with market.database.transaction() as session:
        report = reconciliation.reconcile(session, finance, period)
    reasons = {m.reason for m in report.mismatches}
    assert FAULTS[fault] <= reasons, (fault, report.mismatches)
    assert all(m.objects for m in report.mismatches)

    if fault == "link_deleted":
        # The unlinked record is never billed again, by any later run.
        later = _fresh_period()
        with market.database.transaction() as session:
            rating.run_period(session, later)
            lines = repository.lines_of(session, [i.id for i in repository.invoices_of_period(session, later.key)])
            assert not [x for x in lines if x.source_period == period.key], lines
            again = reconciliation.reconcile(session, finance, period)
        assert "usage_link_missing" in {m.reason for m in again.mismatches}
    _repair(market)


def _pay(session: Any, finance: Any, invoice: Invoice, period: Any) -> None:
    payments.record_bank_transfer(
        session,
        finance,
        invoice_id=invoice.id,
        buyer_org_id=None,
        amount_minor=invoices.due_minor(invoice),
        currency=None,
        reference=f"ref-{invoice.id}",
        received_at=period.start,
    )


def _repair(market: Market) -> None:
    """Take out the global faults (they would show in every later period's report)."""
    with market.database.engine.begin() as connection:
        _unchecked(connection)
        connection.execute(delete(Payment).where(Payment.invoice_id == "inv_" + "0" * 20))
        connection.execute(update(Payment).where(Payment.received_at.is_(None)).values(received_at=utcnow()))
