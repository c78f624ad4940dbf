"""The SQL behind revenue shares, the journal and reconciliation (split from billing.repository)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.config import Period
from billing.models import (
    AgreementShare,
    Distribution,
    Invoice,
    JournalEntry,
    JournalLine,
    MismatchAcknowledgement,
    Payment,
    PaymentStatus,
    RevenueShare,
)
from billing.repository import INV, L
from market.pagination import Key, after_key

# -- revenue --------------------------------------------------------------------------------------


def product_shares(session: Session, product_id: str) -> Sequence[RevenueShare]:
    return session.scalars(
        select(RevenueShare).where(RevenueShare.product_id == product_id).order_by(RevenueShare.id)
    ).all()


def replace_product_shares(session: Session, product_id: str, rows: list[RevenueShare]) -> None:
    for old in product_shares(session, product_id):
        session.delete(old)
    session.flush()
    session.add_all(rows)
    session.flush()


def agreement_shares(session: Session, agreement_id: str) -> Sequence[AgreementShare]:
    return session.scalars(
        select(AgreementShare).where(AgreementShare.agreement_id == agreement_id).order_by(AgreementShare.id)
    ).all()


def distributions(
    session: Session, *, period: str | None = None, party_org_id: str | None = None, platform: bool = False
) -> Sequence[Distribution]:
    query = select(Distribution)
    if period:
        query = query.where(Distribution.period == period)
    if party_org_id:
        query = query.where(Distribution.party_org_id == party_org_id)
    if platform:
        query = query.where(Distribution.party_kind == "platform")
    return session.scalars(query.order_by(Distribution.id)).all()


def distributed_by_payment(session: Session, payment_ids: Sequence[str]) -> dict[str, int]:
    if not payment_ids:
        return {}
    rows = session.execute(
        select(Distribution.payment_id, func.sum(Distribution.amount_minor))
        .where(Distribution.payment_id.in_(payment_ids))
        .group_by(Distribution.payment_id)
    )
    return {r[0]: int(r[1]) for r in rows}


def distributed_by_party(session: Session, invoice_id: str) -> dict[tuple[str | None, str, str | None], int]:
    """What was distributed for an invoice so far, per (agreement, party kind, party org)."""
    rows = session.execute(
        select(
            Distribution.agreement_id,
            Distribution.party_kind,
            Distribution.party_org_id,
            func.sum(Distribution.amount_minor),
        )
        .where(Distribution.invoice_id == invoice_id)
        .group_by(Distribution.agreement_id, Distribution.party_kind, Distribution.party_org_id)
    )
    return {(r[0], r[1], r[2]): int(r[3]) for r in rows}


# -- journal --------------------------------------------------------------------------------------


def balances(session: Session, currency: str | None = None) -> list[tuple[str, str, int]]:
    query = (
        select(JournalLine.account, JournalEntry.currency, func.sum(JournalLine.amount_minor))
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .group_by(JournalLine.account, JournalEntry.currency)
        .order_by(JournalLine.account)
    )
    if currency:
        query = query.where(JournalEntry.currency == currency)
    return [(r[0], r[1], int(r[2])) for r in session.execute(query)]


def unbalanced_entries(session: Session) -> list[tuple[str, int]]:
    rows = session.execute(
        select(JournalLine.entry_id, func.sum(JournalLine.amount_minor))
        .group_by(JournalLine.entry_id)
        .having(func.sum(JournalLine.amount_minor) != 0)
    )
    return [(r[0], int(r[1])) for r in rows]


def journal_entries(session: Session, reference: str | None, limit: int, after: Key | None) -> Sequence[JournalEntry]:
    """Journal entries newest first (then by id, descending), after the key `after`."""
    order = (JournalEntry.created_at, JournalEntry.id)
    query = select(JournalEntry)
    if reference:
        query = query.where(JournalEntry.reference == reference)
    if after is not None:
        query = query.where(after_key(order, after, descending=True))
    return session.scalars(query.order_by(*(c.desc() for c in order)).limit(limit)).all()


def journal_lines(session: Session, entry_ids: Sequence[str]) -> Sequence[JournalLine]:
    if not entry_ids:
        return []
    return session.scalars(
        select(JournalLine).where(JournalLine.entry_id.in_(entry_ids)).order_by(JournalLine.id)
    ).all()


# -- reconciliation reads -------------------------------------------------------------------------


def invoice_line_sums(session: Session, period: str) -> dict[str, int]:
    rows = session.execute(
        select(L.c.invoice_id, func.sum(L.c.amount_minor))
        .select_from(L.join(INV, INV.c.id == L.c.invoice_id))
        .where(INV.c.period == period)
        .group_by(L.c.invoice_id)
    )
    return {r[0]: int(r[1]) for r in rows}


def payments_without_invoice(session: Session, period: Period) -> Sequence[Payment]:
    return session.scalars(
        select(Payment).where(
            Payment.invoice_id.is_(None),
            Payment.status == PaymentStatus.SUCCEEDED.value,
            Payment.received_at >= period.start,
            Payment.received_at < period.end,
        )
    ).all()


def payments_for_period(session: Session, period: str) -> Sequence[Payment]:
    return session.scalars(
        select(Payment)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Invoice.period == period)
        .order_by(Payment.created_at)
    ).all()


def acknowledgements(session: Session, period: str) -> Sequence[MismatchAcknowledgement]:
    return session.scalars(
        select(MismatchAcknowledgement)
        .where(MismatchAcknowledgement.period == period)
        .order_by(MismatchAcknowledgement.acknowledged_at, MismatchAcknowledgement.id)
    ).all()


def acknowledgement(session: Session, period: str, key: str) -> MismatchAcknowledgement | None:
    return session.scalars(
        select(MismatchAcknowledgement).where(
            MismatchAcknowledgement.period == period, MismatchAcknowledgement.mismatch_key == key
        )
    ).one_or_none()
