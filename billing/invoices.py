"""Invoices: who sees which, the lifecycle (draft → finalized → paid, or void / uncollectible),
gap-free numbering at finalization, and credit notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from billing import ledger, repository
from billing.config import Period, billing_settings
from billing.models import CreditNote, Invoice, InvoiceLine, InvoiceStatus, PeriodStatus
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, NotFound, Unprocessable
from market.pagination import Key
from metering.models import UsageRecord

READERS = (Role.BUYER, Role.FINANCE)
"""Who reads invoices, payments and credit notes: a buyer its own, finance all (minimal scope: not the
admin, who manages accounts, nor the regulator, who supervises queries and products)."""


def due_minor(invoice: Invoice) -> int:
    """What the buyer still owes: total less credit notes less net payments (negative if overpaid)."""
    return invoice.total_minor - invoice.credited_minor - invoice.paid_minor


def ensure_open(session: Session, period: str) -> None:
    """Closed periods are locked: nothing on their invoices may change."""
    row = repository.get_period(session, period)
    if row is not None and row.status == PeriodStatus.CLOSED.value:
        raise Conflict("period_closed", period=period)


def visible_invoice(session: Session, actor: Principal, invoice_id: str, *, lock: bool = False) -> Invoice:
    """An invoice the caller may read: a buyer's own, or any for finance."""
    actor.require(*READERS)
    invoice = repository.get_invoice(session, invoice_id, lock=lock)
    if invoice is None or (actor.role == Role.BUYER and invoice.buyer_org_id != actor.org_id):
        raise NotFound("invoice_not_found", invoice=invoice_id)
    return invoice


def list_invoices(
    session: Session,
    actor: Principal,
    *,
    status: str | None,
    period: str | None,
    overdue: bool,
    buyer: str | None,
    limit: int,
    after: Key | None,
) -> Sequence[Invoice]:
    """Buyers see their own invoices; finance all, by status, period, overdue."""
    actor.require(*READERS)
    if status is not None and status not in {s.value for s in InvoiceStatus}:
        raise Unprocessable("invalid_invoice_status", status=status, allowed=", ".join(s.value for s in InvoiceStatus))
    if period is not None:
        Period.parse(period)
    buyer_org = actor.org_id if actor.role == Role.BUYER else buyer
    return repository.list_invoices(
        session,
        buyer_org_id=buyer_org,
        status=status,
        period=period,
        overdue_at=utcnow() if overdue else None,
        limit=limit,
        after=after,
    )


def line_usage(
    session: Session, actor: Principal, invoice_id: str, line_id: str, limit: int, after: Key | None
) -> Sequence[UsageRecord]:
    """The usage records behind one invoice line."""
    invoice = visible_invoice(session, actor, invoice_id)
    line = repository.get_line(session, line_id)
    if line is None or line.invoice_id != invoice.id:
        raise NotFound("invoice_line_not_found", line=line_id)
    return repository.usage_of_line(session, line.id, limit, after)


def _locked_in_open_period(session: Session, actor: Principal | None, invoice_id: str) -> Invoice:
    """The invoice, row-locked for a finance change, in a period that is not closed (actor None: a job)."""
    if actor is not None:
        actor.require(Role.FINANCE)
    invoice = repository.get_invoice(session, invoice_id, lock=True)
    if invoice is None:
        raise NotFound("invoice_not_found", invoice=invoice_id)
    ensure_open(session, invoice.period)
    return invoice


def finalize(session: Session, actor: Principal | None, invoice_id: str, *, now: datetime | None = None) -> Invoice:
    """Finalize a draft: number it (sequential per year, no gaps), set its due date, post the receivable."""
    invoice = _locked_in_open_period(session, actor, invoice_id)
    if invoice.status != InvoiceStatus.DRAFT.value:
        raise Conflict("invoice_not_draft", invoice=invoice.id, status=invoice.status)
    now = now or utcnow()
    number = repository.next_number(session, "INV", now.year)
    invoice.number = f"INV-{now.year}-{number:06d}"
    invoice.status = InvoiceStatus.FINALIZED.value
    invoice.finalized_at = now
    invoice.due_at = now + timedelta(days=billing_settings().payment_terms_days)
    invoice.updated_at = now
    ledger.record(
        session,
        kind="invoice_finalized",
        reference=invoice.id,
        period=invoice.period,
        currency=invoice.currency,
        lines=[
            (ledger.receivable(invoice.buyer_org_id), invoice.total_minor),
            (ledger.BILLED_REVENUE, -invoice.total_minor),
        ],
        memo=f"invoice {invoice.number}",
    )
    session.flush()
    return invoice


def finalize_period(session: Session, actor: Principal | None, period: Period) -> list[Invoice]:
    """Finalize every draft of the period, in a stable order (so numbers follow buyers' order)."""
    if actor is not None:
        actor.require(Role.FINANCE)
    ensure_open(session, period.key)
    drafts = repository.invoices_of_period(session, period.key, status=InvoiceStatus.DRAFT.value)
    return [finalize(session, None, d.id) for d in drafts]


def void(session: Session, actor: Principal, invoice_id: str, reason: str) -> Invoice:
    """Void a finalized invoice nothing was paid on; its usage stays linked (forgiven, not re-billed)."""
    invoice = _locked_in_open_period(session, actor, invoice_id)
    if invoice.status != InvoiceStatus.FINALIZED.value or invoice.paid_minor != 0:
        raise Conflict("invoice_not_voidable", invoice=invoice.id, status=invoice.status)
    open_amount = invoice.total_minor - invoice.credited_minor
    invoice.status = InvoiceStatus.VOID.value
    invoice.voided_at = utcnow()
    invoice.status_reason = reason
    ledger.record(
        session,
        kind="invoice_voided",
        reference=invoice.id,
        period=invoice.period,
        currency=invoice.currency,
        lines=[(ledger.BILLED_REVENUE, open_amount), (ledger.receivable(invoice.buyer_org_id), -open_amount)],
        memo=reason,
    )
    return invoice


def mark_uncollectible(session: Session, actor: Principal, invoice_id: str, reason: str) -> Invoice:
    """Write off what is still due on a finalized invoice."""
    invoice = _locked_in_open_period(session, actor, invoice_id)
    if invoice.status != InvoiceStatus.FINALIZED.value:
        raise Conflict("invoice_not_finalized", invoice=invoice.id, status=invoice.status)
    due = due_minor(invoice)
    invoice.status = InvoiceStatus.UNCOLLECTIBLE.value
    invoice.status_reason = reason
    ledger.record(
        session,
        kind="invoice_uncollectible",
        reference=invoice.id,
        period=invoice.period,
        currency=invoice.currency,
        lines=[(ledger.BAD_DEBT, due), (ledger.receivable(invoice.buyer_org_id), -due)],
        memo=reason,
    )
    return invoice


def issue_credit_note(
    session: Session, actor: Principal, invoice: Invoice, amount_minor: int, reason: str
) -> CreditNote:
    """A correction against a finalized or paid invoice, never more than was invoiced and not yet credited."""
    actor.require(Role.FINANCE)
    ensure_open(session, invoice.period)
    if invoice.status not in (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value):
        raise Conflict("invoice_not_finalized", invoice=invoice.id, status=invoice.status)
    creditable = invoice.total_minor - invoice.credited_minor
    if amount_minor <= 0 or amount_minor > creditable:
        raise Unprocessable("credit_note_amount", amount=amount_minor, creditable=creditable)
    now = utcnow()
    number = repository.next_number(session, "CN", now.year)
    note = CreditNote(
        number=f"CN-{now.year}-{number:06d}",
        invoice_id=invoice.id,
        amount_minor=amount_minor,
        currency=invoice.currency,
        reason=reason,
        created_by=actor.user_id,
        created_at=now,
    )
    session.add(note)
    invoice.credited_minor += amount_minor
    invoice.updated_at = now
    if invoice.status == InvoiceStatus.FINALIZED.value and due_minor(invoice) <= 0:
        invoice.status = InvoiceStatus.PAID.value
        invoice.paid_at = now
    session.flush()
    ledger.record(
        session,
        kind="credit_note",
        reference=note.id,
        period=invoice.period,
        currency=invoice.currency,
        lines=[(ledger.CREDIT_NOTES, amount_minor), (ledger.receivable(invoice.buyer_org_id), -amount_minor)],
        memo=f"{note.number} against {invoice.number}: {reason}",
    )
    return note


def credit_notes(session: Session, actor: Principal) -> Sequence[CreditNote]:
    actor.require(*READERS)
    return repository.list_credit_notes(session, actor.org_id if actor.role == Role.BUYER else None)


def lines_by_invoice(session: Session, invoices: Sequence[Invoice]) -> dict[str, list[InvoiceLine]]:
    out: dict[str, list[InvoiceLine]] = {i.id: [] for i in invoices}
    for line in repository.lines_of(session, [i.id for i in invoices]):
        out[line.invoice_id].append(line)
    return out
