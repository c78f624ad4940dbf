"""The SQL behind reconciliation's deeper checks: the journal against its sub-ledgers, orphans of every
kind, invoice lines against their usage links, and monthly fees (split from finance_repository)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from billing.config import Period
from billing.models import CreditNote, Distribution, Invoice, JournalEntry, JournalLine, Payment, PaymentStatus
from billing.repository import INV, L, U, X
from metering.models import ChargeType

CHUNK = 500


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def credit_notes_of(session: Session, invoice_ids: Sequence[str]) -> list[CreditNote]:
    out: list[CreditNote] = []
    for chunk in _chunks(invoice_ids):
        out.extend(session.scalars(select(CreditNote).where(CreditNote.invoice_id.in_(chunk))))
    return out


def distributions_of(session: Session, payment_ids: Sequence[str]) -> list[Distribution]:
    out: list[Distribution] = []
    for chunk in _chunks(payment_ids):
        out.extend(session.scalars(select(Distribution).where(Distribution.payment_id.in_(chunk))))
    return out


@dataclass(frozen=True)
class PostedLine:
    entry_id: str
    kind: str
    reference: str
    currency: str
    account: str
    amount_minor: int


POSTED = (
    JournalEntry.id,
    JournalEntry.kind,
    JournalEntry.reference,
    JournalEntry.currency,
    JournalLine.account,
    JournalLine.amount_minor,
)


def journal_of(session: Session, references: Sequence[str]) -> list[PostedLine]:
    """Every journal line of the entries that name one of `references`."""
    out: list[PostedLine] = []
    for chunk in _chunks(references):
        rows = session.execute(
            select(*POSTED)
            .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .where(JournalEntry.reference.in_(chunk))
        )
        out.extend(PostedLine(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows)
    return out


def orphan_entries(session: Session, period: str) -> list[PostedLine]:
    """Lines of the period's journal entries whose reference is no invoice, payment or credit note."""
    rows = session.execute(
        select(*POSTED)
        .outerjoin(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(
            JournalEntry.period == period,
            ~exists().where(Invoice.id == JournalEntry.reference),
            ~exists().where(Payment.id == JournalEntry.reference),
            ~exists().where(CreditNote.id == JournalEntry.reference),
        )
    )
    return [PostedLine(r[0], r[1], r[2], r[3], r[4] or "", int(r[5] or 0)) for r in rows]


def payments_with_missing_invoice(session: Session) -> Sequence[Payment]:
    """Payments that name an invoice that does not exist (possible only if someone bypassed the keys)."""
    return session.scalars(
        select(Payment).where(Payment.invoice_id.is_not(None), ~exists().where(Invoice.id == Payment.invoice_id))
    ).all()


def undated_payments(session: Session) -> Sequence[Payment]:
    """Succeeded payments with no date received: no period can account for them."""
    return session.scalars(
        select(Payment).where(Payment.status == PaymentStatus.SUCCEEDED.value, Payment.received_at.is_(None))
    ).all()


@dataclass(frozen=True)
class LineLinks:
    invoice_id: str
    line_id: str
    agreement_id: str
    component: str
    source_period: str
    quantity: int
    links: int
    records: int
    """Links whose usage record exists (fewer than `links` when some name no record)."""
    amount_minor: int
    usage_minor: int


def usage_lines_of_period(session: Session, period: str) -> list[LineLinks]:
    """Every usage line of the period's invoices with its count of links, of their existing records,
    and those records' amount (one scan of the period's links)."""
    linked = (
        select(
            X.c.line_id.label("line_id"),
            func.count().label("links"),
            func.count(U.c.id).label("records"),
            func.coalesce(func.sum(U.c.amount_minor), 0).label("amount"),
        )
        .select_from(X.outerjoin(U, U.c.id == X.c.usage_record_id))
        .group_by(X.c.line_id)
        .subquery()
    )
    rows = session.execute(
        select(
            L.c.invoice_id,
            L.c.id,
            L.c.agreement_id,
            L.c.component,
            L.c.source_period,
            L.c.quantity,
            func.coalesce(linked.c.links, 0),
            func.coalesce(linked.c.records, 0),
            L.c.amount_minor,
            func.coalesce(linked.c.amount, 0),
        )
        .select_from(L.join(INV, INV.c.id == L.c.invoice_id).outerjoin(linked, linked.c.line_id == L.c.id))
        .where(INV.c.period == period, L.c.component != "monthly_fee")
    )
    return [
        LineLinks(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]), int(r[8]), int(r[9])) for r in rows
    ]


def lines_missing_links(session: Session, keys: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Of the (agreement, component, source period) keys, those with a line (on any invoice) that bills
    more usage records than are still linked to it: its links were deleted."""
    if not keys:
        return set()
    found: set[tuple[str, str, str]] = set()
    key_list = sorted(keys)
    for start in range(0, len(key_list), CHUNK):
        chunk = key_list[start : start + CHUNK]
        links = select(func.count()).where(X.c.line_id == L.c.id).scalar_subquery()
        rows = session.execute(
            select(L.c.agreement_id, L.c.component, L.c.source_period).where(
                or_(*(and_(L.c.agreement_id == a, L.c.component == c, L.c.source_period == s) for a, c, s in chunk)),
                L.c.quantity > links,
            )
        )
        found.update((r[0], r[1], r[2]) for r in rows)
    return found


@dataclass(frozen=True)
class OffLine:
    """The period's accepted usage on no existing line, summed per group."""

    buyer_org_id: str
    currency: str
    agreement_id: str
    charge_type: str
    month: str
    linked: bool
    """True for records linked to a line that does not exist (an orphan link), False for unlinked ones."""
    records: int
    amount_minor: int


def usage_on_no_line(session: Session, period: Period) -> list[OffLine]:
    """The period's accepted usage that is on no existing invoice line, in one scan of its records."""
    linked = X.c.usage_record_id.is_not(None)
    rows = session.execute(
        select(
            U.c.buyer_org_id,
            U.c.currency,
            U.c.agreement_id,
            U.c.charge_type,
            U.c.month,
            linked,
            func.count(),
            func.coalesce(func.sum(U.c.amount_minor), 0),
        )
        .select_from(U.outerjoin(X, X.c.usage_record_id == U.c.id).outerjoin(L, L.c.id == X.c.line_id))
        .where(U.c.month.in_(period.months), U.c.charge_type != ChargeType.REJECTED.value, L.c.id.is_(None))
        .group_by(U.c.buyer_org_id, U.c.currency, U.c.agreement_id, U.c.charge_type, U.c.month, linked)
    )
    return [OffLine(r[0], r[1], r[2], r[3], r[4], bool(r[5]), int(r[6]), int(r[7])) for r in rows]


def usage_rated_by_currency(session: Session, period: Period) -> dict[str, int]:
    rows = session.execute(
        select(U.c.currency, func.coalesce(func.sum(U.c.amount_minor), 0))
        .where(U.c.month.in_(period.months), U.c.charge_type != ChargeType.REJECTED.value)
        .group_by(U.c.currency)
    )
    return {r[0]: int(r[1]) for r in rows}
