"""Reconciliation (对账) of a period: usage rated, invoiced, paid and distributed, compared, and the
books themselves checked (`billing.recon_checks`), with every mismatch naming its objects and a
reason. Closing a period locks it, and needs every mismatch resolved or acknowledged by finance."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy.orm import Session

from billing import finance_repository, invoices, recon_checks, recon_repository, repository
from billing.config import Period
from billing.models import (
    BillingPeriod,
    Invoice,
    InvoiceStatus,
    JournalEntry,
    JournalLine,
    MismatchAcknowledgement,
    Payment,
    PaymentMethod,
    PaymentStatus,
    PeriodStatus,
)
from billing.recon_checks import Mismatch
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import settings_of
from market.errors import Conflict, NotFound, Unprocessable
from market.pagination import Key

COUNTED = (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value, InvoiceStatus.UNCOLLECTIBLE.value)


@dataclass
class Totals:
    """One currency's totals; amounts of different currencies are never added together."""

    usage_billable_minor: int = 0
    invoiced_minor: int = 0
    fees_minor: int = 0
    """Monthly fees on the period's invoices (rated from the agreements, not from usage)."""
    adjustments_minor: int = 0
    """Late usage of earlier periods invoiced in this period."""
    credited_minor: int = 0
    paid_minor: int = 0
    paid_by_method: dict[str, int] = field(default_factory=lambda: {m.value: 0 for m in PaymentMethod})
    """Net money received for the period's invoices, by method (stripe, bank_transfer)."""
    distributed_minor: int = 0


@dataclass
class Report:
    period: str
    currency: str
    """The currency of the top-level totals (the marketplace's); `by_currency` has every currency."""
    usage_billable_minor: int
    invoiced_minor: int
    fees_minor: int
    adjustments_minor: int
    credited_minor: int
    paid_minor: int
    paid_by_method: dict[str, int]
    distributed_minor: int
    status: str
    by_currency: dict[str, Totals]
    mismatches: list[Mismatch] = field(default_factory=list)
    open_mismatches: int = 0
    """Mismatches finance has not acknowledged: closing needs none."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def reconcile(session: Session, actor: Principal | None, period: Period) -> Report:
    """Compare the period's usage, invoices, payments, distributions and journal (finance only)."""
    if actor is not None:
        actor.require(Role.FINANCE)
    all_invoices = repository.invoices_of_period(session, period.key)
    found = _invoice_checks(all_invoices) + _invoice_totals(session, period, all_invoices)
    link_findings, broken = recon_checks.check_links(session, period, all_invoices)
    found += recon_checks.check_unlinked_usage(session, period, all_invoices, broken)
    found += link_findings

    payments = finance_repository.payments_for_period(session, period.key)
    succeeded = [p for p in payments if p.status == PaymentStatus.SUCCEEDED.value]
    stray = finance_repository.payments_without_invoice(session, period)
    found += [
        Mismatch(
            "paid_with_no_invoice",
            {"payment": p.id, "buyer": p.buyer_org_id, "reference": p.reference},
            p.amount_minor,
            "money received that no invoice explains",
            p.currency,
        )
        for p in stray
    ]
    found += [_stripe_amount(p) for p in payments if _stripe_amount_differs(p)]
    found += [
        Mismatch(
            "refund_pending" if p.status == PaymentStatus.PENDING.value else "refund_failed",
            {"payment": p.id, "invoice": p.invoice_id or "", "credit_note": p.credit_note_id or ""},
            p.amount_minor,
            f"a refund of a credit note is {p.status} ({p.failure_code or 'not yet confirmed by Stripe'})",
            p.currency,
        )
        for p in payments
        if p.amount_minor < 0 and p.status in (PaymentStatus.PENDING.value, PaymentStatus.FAILED.value)
    ]
    distributed = finance_repository.distributed_by_payment(session, [p.id for p in succeeded])
    found += [
        Mismatch(
            "undistributed",
            {"payment": p.id, "invoice": p.invoice_id or ""},
            p.amount_minor - distributed.get(p.id, 0),
            f"distributed {distributed.get(p.id, 0)} of {p.amount_minor}",
            p.currency,
        )
        for p in succeeded
        if distributed.get(p.id, 0) != p.amount_minor
    ]
    found += [
        Mismatch("journal_unbalanced", {"journal_entry": entry_id}, total, "lines do not sum to zero")
        for entry_id, total in finance_repository.unbalanced_entries(session)
    ]
    found += recon_checks.check_payments(session, all_invoices, succeeded)
    found += recon_checks.check_distributions(session, period, all_invoices, succeeded)
    notes = recon_repository.credit_notes_of(session, [i.id for i in all_invoices])
    received = [*succeeded, *stray]
    expected = recon_checks.expected_entries(
        all_invoices, notes, received, recon_repository.distributions_of(session, [p.id for p in received])
    )
    references = [*(i.id for i in all_invoices), *(n.id for n in notes), *(p.id for p in [*payments, *stray])]
    found += recon_checks.check_journal(
        expected, recon_repository.journal_of(session, references), recon_repository.orphan_entries(session, period.key)
    )
    found += recon_checks.check_monthly_fees(session, period, all_invoices)
    found += recon_checks.check_stripe(session, payments)
    acknowledged = {a.mismatch_key: a for a in finance_repository.acknowledgements(session, period.key)}
    for mismatch in found:
        ack = acknowledged.get(mismatch.key)
        if ack is not None and (ack.amount_minor, ack.currency) == (mismatch.amount_minor, mismatch.currency):
            mismatch.acknowledgement = {
                "note": ack.note,
                "by": ack.acknowledged_by,
                "at": ack.acknowledged_at.isoformat(),
            }

    totals = _totals(session, period, all_invoices, succeeded, distributed)
    currency = settings_of(session).currency
    main = totals.get(currency, Totals())
    row = repository.get_period(session, period.key)
    return Report(
        period=period.key,
        currency=currency,
        **{name: getattr(main, name) for name in SUMMARY_FIELDS},
        paid_by_method=main.paid_by_method,
        status=row.status if row else PeriodStatus.OPEN.value,
        by_currency=totals,
        mismatches=found,
        open_mismatches=sum(1 for m in found if m.acknowledgement is None),
    )


def _invoice_checks(all_invoices: Sequence[Invoice]) -> list[Mismatch]:
    found: list[Mismatch] = []
    for invoice in all_invoices:
        objects = {"invoice": invoice.id, "number": invoice.number or "", "buyer": invoice.buyer_org_id}
        currency = invoice.currency
        if invoice.status == InvoiceStatus.DRAFT.value:
            found.append(
                Mismatch(
                    "invoice_not_finalized",
                    {"invoice": invoice.id, "buyer": invoice.buyer_org_id},
                    invoice.total_minor,
                    "draft",
                    currency,
                )
            )
        if invoice.status == InvoiceStatus.VOID.value:
            reason = f"voided: {invoice.status_reason}; its usage is not billed again"
            found.append(Mismatch("invoice_voided", objects, invoice.total_minor, reason, currency))
        if invoice.status == InvoiceStatus.UNCOLLECTIBLE.value:
            reason = f"uncollectible: {invoice.status_reason}"
            found.append(Mismatch("written_off", objects, invoices.due_minor(invoice), reason, currency))
        if invoice.status in (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value):
            due = invoices.due_minor(invoice)
            if due > 0:
                overdue = invoice.due_at is not None and invoice.due_at < utcnow()
                found.append(Mismatch("unpaid", objects, due, "overdue" if overdue else "not yet due", currency))
            elif due < 0:
                found.append(
                    Mismatch("overpaid", objects, -due, "received more than invoiced less credit notes", currency)
                )
    return found


def _invoice_totals(session: Session, period: Period, all_invoices: Sequence[Invoice]) -> list[Mismatch]:
    sums = finance_repository.invoice_line_sums(session, period.key)
    return [
        Mismatch(
            "invoice_total_mismatch",
            {"invoice": i.id},
            i.total_minor - sums.get(i.id, 0),
            f"total {i.total_minor}, lines add up to {sums.get(i.id, 0)}",
            i.currency,
        )
        for i in all_invoices
        if sums.get(i.id, 0) != i.total_minor
    ]


def _stripe_amount_differs(payment: Payment) -> bool:
    return (
        payment.method == PaymentMethod.STRIPE.value
        and payment.stripe_amount_minor is not None
        and payment.amount_minor > 0
        and (
            payment.stripe_amount_minor != payment.amount_minor
            or (payment.stripe_currency or payment.currency) != payment.currency
        )
    )


def _stripe_amount(payment: Payment) -> Mismatch:
    stripe_amount = payment.stripe_amount_minor or 0
    return Mismatch(
        "stripe_amount_mismatch",
        {"payment": payment.id, "payment_intent": payment.stripe_payment_intent_id or ""},
        stripe_amount - payment.amount_minor,
        f"Stripe says {stripe_amount} {payment.stripe_currency}, we say {payment.amount_minor} {payment.currency}",
        payment.currency,
    )


def _totals(
    session: Session,
    period: Period,
    all_invoices: Sequence[Invoice],
    succeeded: Sequence[Payment],
    distributed: dict[str, int],
) -> dict[str, Totals]:
    totals: dict[str, Totals] = {}
    for currency, amount in recon_repository.usage_rated_by_currency(session, period).items():
        totals.setdefault(currency, Totals()).usage_billable_minor = amount
    counted = [i for i in all_invoices if i.status in COUNTED]
    currency_of = {i.id: i.currency for i in counted}
    for invoice in counted:
        t = totals.setdefault(invoice.currency, Totals())
        t.invoiced_minor += invoice.total_minor
        t.credited_minor += invoice.credited_minor
    for line in repository.lines_of(session, [i.id for i in counted]):
        t = totals[currency_of[line.invoice_id]]
        t.fees_minor += line.amount_minor if line.component == "monthly_fee" else 0
        t.adjustments_minor += line.amount_minor if line.source_period != period.key else 0
    for payment in succeeded:
        t = totals.setdefault(payment.currency, Totals())
        t.paid_minor += payment.amount_minor
        t.paid_by_method[payment.method] = t.paid_by_method.get(payment.method, 0) + payment.amount_minor
        t.distributed_minor += distributed.get(payment.id, 0)
    return dict(sorted(totals.items()))


SUMMARY_FIELDS = (
    "usage_billable_minor",
    "invoiced_minor",
    "fees_minor",
    "adjustments_minor",
    "credited_minor",
    "paid_minor",
    "distributed_minor",
)


def to_rows(report: Report) -> list[list[str]]:
    """The report as rows: totals per currency, then each mismatch with its acknowledgement, if any."""
    rows = [
        [
            "section",
            "reason",
            "objects",
            "amount_minor",
            "currency",
            "detail",
            "key",
            "acknowledged_by",
            "acknowledgement",
        ]
    ]
    for currency, totals in report.by_currency.items():
        for name in SUMMARY_FIELDS:
            rows.append(["summary", name, report.period, str(getattr(totals, name)), currency, "", "", "", ""])
        for method, amount in totals.paid_by_method.items():
            rows.append(["summary", f"paid_{method}_minor", report.period, str(amount), currency, "", "", "", ""])
    for m in report.mismatches:
        objects = "; ".join(f"{k}={v}" for k, v in m.objects.items())
        ack = m.acknowledgement or {}
        rows.append(
            [
                "mismatch",
                m.reason,
                objects,
                str(m.amount_minor),
                m.currency,
                m.detail,
                m.key,
                ack.get("by", ""),
                ack.get("note", ""),
            ]
        )
    return rows


def to_csv(report: Report) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(to_rows(report))
    return out.getvalue().encode()


def to_xlsx(report: Report) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"reconciliation {report.period}"
    for i, row in enumerate(to_rows(report)):
        sheet.append([int(cell) if i and j == 3 else cell for j, cell in enumerate(row)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def periods(session: Session, actor: Principal) -> Sequence[BillingPeriod]:
    """Every billing period and its state (finance only)."""
    actor.require(Role.FINANCE)
    return repository.list_periods(session)


def balances(session: Session, actor: Principal, currency: str | None) -> list[tuple[str, str, int]]:
    """Ledger account balances, computed from the journal (finance only)."""
    actor.require(Role.FINANCE)
    return finance_repository.balances(session, currency)


def journal(
    session: Session, actor: Principal, reference: str | None, limit: int, after: Key | None
) -> tuple[Sequence[JournalEntry], Sequence[JournalLine]]:
    """Journal entries, newest first, and their lines (finance only)."""
    actor.require(Role.FINANCE)
    found = finance_repository.journal_entries(session, reference, limit, after)
    return found, finance_repository.journal_lines(session, [e.id for e in found])


def close_period(session: Session, actor: Principal | None, period: Period) -> BillingPeriod:
    """Lock an ended period: no billing run, finalization, voiding or credit note on it any more.

    Only with no open mismatch: each one is resolved, or acknowledged by finance with a reason. Taken
    under the same locks as runs and finalizations, so none of them can slip in. A closed period is
    never reopened: corrections go on a later period as credit notes or adjustments."""
    if actor is not None:
        actor.require(Role.FINANCE)
    invoices.require_ended(period)
    row = invoices.lock_open_period(session, period)
    if repository.invoices_of_period(session, period.key, status=InvoiceStatus.DRAFT.value):
        raise Conflict("period_has_drafts", period=period.key)
    report = reconcile(session, None, period)
    if report.open_mismatches:
        reasons = sorted({m.reason for m in report.mismatches if m.acknowledgement is None})
        raise Conflict(
            "period_has_open_mismatches", period=period.key, count=report.open_mismatches, reasons=", ".join(reasons)
        )
    row.status = PeriodStatus.CLOSED.value
    row.closed_at = utcnow()
    row.closed_by = actor.user_id if actor else None
    session.flush()
    return row


def acknowledge(
    session: Session, actor: Principal | None, period: Period, mismatch_key: str, note: str
) -> MismatchAcknowledgement:
    """Finance accepts one open mismatch of the period, with a reason, so that the period may close."""
    if actor is not None:
        actor.require(Role.FINANCE)
    if not note.strip():
        raise Unprocessable("acknowledgement_note_required")
    row = repository.lock_period(session, period)
    if row.status == PeriodStatus.CLOSED.value:
        raise Conflict("period_closed", period=period.key)
    found = next((m for m in reconcile(session, None, period).mismatches if m.key == mismatch_key), None)
    if found is None:
        raise NotFound("mismatch_not_found", period=period.key, key=mismatch_key)
    ack = finance_repository.acknowledgement(session, period.key, mismatch_key) or MismatchAcknowledgement(
        period=period.key, mismatch_key=mismatch_key
    )
    ack.reason = found.reason
    ack.objects = "; ".join(f"{k}={v}" for k, v in found.objects.items())
    ack.amount_minor = found.amount_minor
    ack.currency = found.currency
    ack.note = note.strip()
    ack.acknowledged_by = actor.user_id if actor else "cli"
    ack.acknowledged_at = utcnow()
    session.add(ack)
    session.flush()
    return ack


def acknowledgements(
    session: Session, actor: Principal, period: Period
) -> tuple[BillingPeriod | None, Sequence[MismatchAcknowledgement]]:
    """The period's state and every mismatch finance acknowledged, with reasons (finance and the regulator)."""
    actor.require(Role.FINANCE, Role.REGULATOR)
    return repository.get_period(session, period.key), finance_repository.acknowledgements(session, period.key)
