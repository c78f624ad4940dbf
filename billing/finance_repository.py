"""The SQL behind revenue shares, the journal and reconciliation (split from billing.repository)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from billing.config import Period
from billing.models import (
    AgreementShare,
    Distribution,
    DocumentSequence,
    Invoice,
    JournalEntry,
    JournalLine,
    MismatchAcknowledgement,
    Payment,
    PaymentStatus,
    RevenueShare,
)
from billing.repository import INV, L
from market.db import insert_ignore
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


def lock_distributions(session: Session, period: str, currency: str) -> None:
    """The lock every distribution of a period takes, after its invoice's and payment's locks (the
    last lock of a payment, so no deadlock): distributions of one period are serial, because each
    is the period's cumulative split less what was distributed before. A counter row of
    `document_sequences` (kind `split`, `year` = YYYYMM of the period)."""
    del currency  # one lock per period: a payment settles in one currency
    month = int(period.replace("-", ""))
    insert_ignore(
        session, DocumentSequence.__table__, {"kind": SPLIT_LOCK, "year": month, "last_number": 0}, ["kind", "year"]
    )
    session.execute(
        update(DocumentSequence)
        .where(DocumentSequence.kind == SPLIT_LOCK, DocumentSequence.year == month)
        .values(last_number=DocumentSequence.last_number + 1)
        .execution_options(synchronize_session=False)
    )


SPLIT_LOCK = "split"


def period_weights(session: Session, period: str, currency: str) -> dict[str, dict[str, int]]:
    """Per finalized invoice of the period in `currency`: its agreements' invoiced amounts (the
    weights a payment of the invoice is divided by)."""
    rows = session.execute(
        select(L.c.invoice_id, L.c.agreement_id, func.sum(L.c.amount_minor))
        .select_from(L.join(INV, INV.c.id == L.c.invoice_id))
        .where(INV.c.period == period, INV.c.currency == currency, INV.c.status != "draft")
        .group_by(L.c.invoice_id, L.c.agreement_id)
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for invoice_id, agreement_id, amount in rows:
        out[invoice_id][agreement_id] = int(amount)
    return dict(out)


def distributed_by_invoice(session: Session, period: str, currency: str) -> dict[str, int]:
    """What was distributed per invoice of the period: the payments less refunds distributed so far."""
    rows = session.execute(
        select(Distribution.invoice_id, func.sum(Distribution.amount_minor))
        .where(Distribution.period == period, Distribution.currency == currency)
        .group_by(Distribution.invoice_id)
    )
    return {r[0]: int(r[1]) for r in rows}


def distributed_by_part(session: Session, period: str, currency: str) -> dict[tuple[str, str, str | None], int]:
    """What was distributed in the period so far, per (agreement, party kind, party org)."""
    rows = session.execute(
        select(
            Distribution.agreement_id,
            Distribution.party_kind,
            Distribution.party_org_id,
            func.sum(Distribution.amount_minor),
        )
        .where(Distribution.period == period, Distribution.currency == currency)
        .group_by(Distribution.agreement_id, Distribution.party_kind, Distribution.party_org_id)
    )
    return {(r[0] or "", r[1], r[2]): int(r[3]) for r in rows}


def agreement_shares_of(session: Session, agreement_ids: Sequence[str]) -> list[AgreementShare]:
    out: list[AgreementShare] = []
    for start in range(0, len(agreement_ids), 500):
        chunk = agreement_ids[start : start + 500]
        out.extend(
            session.scalars(
                select(AgreementShare).where(AgreementShare.agreement_id.in_(chunk)).order_by(AgreementShare.id)
            )
        )
    return out


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
