"""Reconciliation (对账) of a period: usage rated, invoiced, paid and distributed, compared, with
every mismatch naming its objects and a reason. Closing a period locks it."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy.orm import Session

from billing import finance_repository, invoices, repository
from billing.config import Period
from billing.models import BillingPeriod, InvoiceStatus, JournalEntry, JournalLine, PaymentStatus, PeriodStatus
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict
from market.pagination import Key

COUNTED = (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value, InvoiceStatus.UNCOLLECTIBLE.value)


@dataclass
class Mismatch:
    reason: str
    """unpaid, overpaid, paid_with_no_invoice, usage_after_finalization, usage_not_invoiced, invoice_voided,
    written_off,
    invoice_not_finalized, line_usage_mismatch, invoice_total_mismatch, stripe_amount_mismatch,
    undistributed, journal_unbalanced."""
    objects: dict[str, str]
    amount_minor: int
    detail: str


@dataclass
class Report:
    period: str
    usage_billable_minor: int
    invoiced_minor: int
    fees_minor: int
    """Monthly fees on the period's invoices (rated from the agreements, not from usage)."""
    adjustments_minor: int
    """Late usage of earlier periods invoiced in this period."""
    credited_minor: int
    paid_minor: int
    paid_by_method: dict[str, int]
    """Net money received for the period's invoices, by method (stripe, bank_transfer)."""
    distributed_minor: int
    status: str
    mismatches: list[Mismatch] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def reconcile(session: Session, actor: Principal | None, period: Period) -> Report:
    """Compare the period's usage, invoices, payments and distributions (finance only)."""
    if actor is not None:
        actor.require(Role.FINANCE)
    found: list[Mismatch] = []
    all_invoices = repository.invoices_of_period(session, period.key)
    counted = [i for i in all_invoices if i.status in COUNTED]
    finalized_buyers = {(i.buyer_org_id) for i in all_invoices if i.status != InvoiceStatus.DRAFT.value}

    for buyer, agreement, records, amount in finance_repository.unbilled_usage_of_period(session, period):
        late = buyer in finalized_buyers
        found.append(
            Mismatch(
                "usage_after_finalization" if late else "usage_not_invoiced",
                {"buyer": buyer, "agreement": agreement},
                amount,
                f"{records} usage records not on any invoice"
                + (
                    "; they go on the next period's invoice as an adjustment"
                    if late
                    else "; run billing for the period"
                ),
            )
        )
    for draft in (i for i in all_invoices if i.status == InvoiceStatus.DRAFT.value):
        found.append(
            Mismatch(
                "invoice_not_finalized", {"invoice": draft.id, "buyer": draft.buyer_org_id}, draft.total_minor, "draft"
            )
        )
    for invoice_id, line_id, line_amount, usage_amount in finance_repository.line_usage_differences(
        session, period.key
    ):
        found.append(
            Mismatch(
                "line_usage_mismatch",
                {"invoice": invoice_id, "line": line_id},
                line_amount - usage_amount,
                f"line says {line_amount}, its usage records add up to {usage_amount}",
            )
        )
    sums = finance_repository.invoice_line_sums(session, period.key)
    for invoice in all_invoices:
        if sums.get(invoice.id, 0) != invoice.total_minor:
            found.append(
                Mismatch(
                    "invoice_total_mismatch",
                    {"invoice": invoice.id},
                    invoice.total_minor - sums.get(invoice.id, 0),
                    f"total {invoice.total_minor}, lines add up to {sums.get(invoice.id, 0)}",
                )
            )
        if invoice.status == InvoiceStatus.VOID.value:
            found.append(
                Mismatch(
                    "invoice_voided",
                    {"invoice": invoice.id, "number": invoice.number or "", "buyer": invoice.buyer_org_id},
                    invoice.total_minor,
                    f"voided: {invoice.status_reason}; its usage is not billed again",
                )
            )
        if invoice.status == InvoiceStatus.UNCOLLECTIBLE.value:
            found.append(
                Mismatch(
                    "written_off",
                    {"invoice": invoice.id, "number": invoice.number or "", "buyer": invoice.buyer_org_id},
                    invoices.due_minor(invoice),
                    f"uncollectible: {invoice.status_reason}",
                )
            )
        if invoice.status in (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value):
            due = invoices.due_minor(invoice)
            objects = {"invoice": invoice.id, "number": invoice.number or "", "buyer": invoice.buyer_org_id}
            if due > 0:
                overdue = invoice.due_at is not None and invoice.due_at < utcnow()
                found.append(Mismatch("unpaid", objects, due, "overdue" if overdue else "not yet due"))
            elif due < 0:
                found.append(Mismatch("overpaid", objects, -due, "received more than invoiced less credit notes"))

    payments = finance_repository.payments_for_period(session, period.key)
    succeeded = [p for p in payments if p.status == PaymentStatus.SUCCEEDED.value]
    for payment in finance_repository.payments_without_invoice(session, period):
        found.append(
            Mismatch(
                "paid_with_no_invoice",
                {"payment": payment.id, "buyer": payment.buyer_org_id, "reference": payment.reference},
                payment.amount_minor,
                "money received that no invoice explains",
            )
        )
    for payment in payments:
        stripe_amount = payment.stripe_amount_minor
        if (
            payment.method == "stripe"
            and stripe_amount is not None
            and payment.amount_minor > 0
            and (
                stripe_amount != payment.amount_minor
                or (payment.stripe_currency or payment.currency) != payment.currency
            )
        ):
            found.append(
                Mismatch(
                    "stripe_amount_mismatch",
                    {"payment": payment.id, "payment_intent": payment.stripe_payment_intent_id or ""},
                    stripe_amount - payment.amount_minor,
                    f"Stripe says {stripe_amount} {payment.stripe_currency}, "
                    f"we say {payment.amount_minor} {payment.currency}",
                )
            )
    distributed = finance_repository.distributed_by_payment(session, [p.id for p in succeeded])
    for payment in succeeded:
        if distributed.get(payment.id, 0) != payment.amount_minor:
            found.append(
                Mismatch(
                    "undistributed",
                    {"payment": payment.id, "invoice": payment.invoice_id or ""},
                    payment.amount_minor - distributed.get(payment.id, 0),
                    f"distributed {distributed.get(payment.id, 0)} of {payment.amount_minor}",
                )
            )
    for entry_id, total in finance_repository.unbalanced_entries(session):
        found.append(Mismatch("journal_unbalanced", {"journal_entry": entry_id}, total, "lines do not sum to zero"))

    counted_lines = repository.lines_of(session, [i.id for i in counted])
    row = repository.get_period(session, period.key)
    return Report(
        period=period.key,
        usage_billable_minor=finance_repository.usage_rated_minor(session, period),
        invoiced_minor=sum(i.total_minor for i in counted),
        fees_minor=sum(x.amount_minor for x in counted_lines if x.component == "monthly_fee"),
        adjustments_minor=sum(x.amount_minor for x in counted_lines if x.source_period != period.key),
        credited_minor=sum(i.credited_minor for i in counted),
        paid_minor=sum(p.amount_minor for p in succeeded),
        paid_by_method={
            method: sum(p.amount_minor for p in succeeded if p.method == method)
            for method in ("bank_transfer", "stripe")
        },
        distributed_minor=sum(distributed.values()),
        status=row.status if row else PeriodStatus.OPEN.value,
        mismatches=found,
    )


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
    rows = [["section", "reason", "objects", "amount_minor", "detail"]]
    for name in SUMMARY_FIELDS:
        rows.append(["summary", name, report.period, str(getattr(report, name)), ""])
    for method, amount in report.paid_by_method.items():
        rows.append(["summary", f"paid_{method}_minor", report.period, str(amount), ""])
    for m in report.mismatches:
        objects = "; ".join(f"{k}={v}" for k, v in m.objects.items())
        rows.append(["mismatch", m.reason, objects, str(m.amount_minor), m.detail])
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
    """Lock the period: no billing run, finalization, voiding or credit note on it any more."""
    if actor is not None:
        actor.require(Role.FINANCE)
    row = repository.lock_period(session, period)
    if row.status == PeriodStatus.CLOSED.value:
        raise Conflict("period_closed", period=period.key)
    if repository.invoices_of_period(session, period.key, status=InvoiceStatus.DRAFT.value):
        raise Conflict("period_has_drafts", period=period.key)
    row.status = PeriodStatus.CLOSED.value
    row.closed_at = utcnow()
    row.closed_by = actor.user_id if actor else None
    session.flush()
    return row
