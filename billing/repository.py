"""All SQL of billing, including every read of other contexts' tables (agreements, usage records,
organisations, products), so that a change there is adapted here only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, case, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from billing.config import Period
from billing.models import (
    BillingPeriod,
    CreditNote,
    DocumentSequence,
    Invoice,
    InvoiceLine,
    InvoiceLineUsage,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    StripeCustomer,
)
from market.accounts.models import Organisation, OrgKind
from market.db import insert_ignore, wait_longer_for_locks
from market.pagination import Key, after_key
from metering.models import Agreement, ChargeType, UsageRecord
from products.models import Product

PUBLIC_PURPOSES = ("public_governance", "public_welfare")
BILLING_LOCK_WAIT_SECONDS = 300
"""How long a run, finalization or close waits for another to finish before giving up (503)."""

# -- locks ----------------------------------------------------------------------------------------


def lock_billing(session: Session) -> None:
    """The global billing lock: the first lock of every run, finalization, void, write-off and close.

    Taken by incrementing a counter row, so on SQLite it is the database's write lock (the first
    statement of the transaction writes) and on PostgreSQL that row's lock, held until commit.
    Batch work queues here behind other batches by design, so it may wait longer than the default."""
    wait_longer_for_locks(session, BILLING_LOCK_WAIT_SECONDS)
    insert_ignore(session, DocumentSequence.__table__, {"kind": "run", "year": 0, "last_number": 0}, ["kind", "year"])
    next_number(session, "run", 0)


def lock_period(session: Session, period: Period) -> BillingPeriod:
    """The period's row, created if needed and locked (row lock on PostgreSQL, write lock on SQLite).
    Callers take `lock_billing` first: one order, so no deadlock."""
    insert_ignore(session, BillingPeriod.__table__, {"period": period.key, "months": period.months_count}, ["period"])
    session.execute(update(BillingPeriod).where(BillingPeriod.period == period.key).values(runs=BillingPeriod.runs))
    row = session.scalars(select(BillingPeriod).where(BillingPeriod.period == period.key).with_for_update()).one()
    session.refresh(row)
    return row


def lock_for_change(session: Session, period: Period) -> BillingPeriod:
    """The locks every change to a period's invoices takes, always in this order: the billing lock,
    then the period's row. Returns the period's row, read after locking."""
    lock_billing(session)
    return lock_period(session, period)


def period_of_key(session: Session, key: str) -> Period:
    """The period an invoice's `period` names, with the length it was billed with."""
    row = session.get(BillingPeriod, key)
    return Period(key, row.months) if row is not None else Period.parse(key)


def get_period(session: Session, key: str) -> BillingPeriod | None:
    return session.get(BillingPeriod, key)


def list_periods(session: Session) -> Sequence[BillingPeriod]:
    return session.scalars(select(BillingPeriod).order_by(BillingPeriod.period.desc())).all()


def next_number(session: Session, kind: str, year: int) -> int:
    """The next number of `kind` in `year`, taken under the sequence row's lock: no gaps, no duplicates."""
    return next_numbers(session, kind, year, 1)[0]


def next_numbers(session: Session, kind: str, year: int, count: int) -> range:
    """`count` consecutive numbers of `kind` in `year`, in one statement under the sequence row's lock."""
    if count <= 0:
        return range(0)
    insert_ignore(session, DocumentSequence.__table__, {"kind": kind, "year": year, "last_number": 0}, ["kind", "year"])
    last = int(
        session.execute(
            update(DocumentSequence)
            .where(DocumentSequence.kind == kind, DocumentSequence.year == year)
            .values(last_number=DocumentSequence.last_number + count)
            .returning(DocumentSequence.last_number)
            .execution_options(synchronize_session=False)
        ).scalar_one()
    )
    return range(last - count + 1, last + 1)


# -- rating: set-based ----------------------------------------------------------------------------

U: Table = UsageRecord.__table__  # type: ignore[assignment]
INV: Table = Invoice.__table__  # type: ignore[assignment]
L: Table = InvoiceLine.__table__  # type: ignore[assignment]
X: Table = InvoiceLineUsage.__table__  # type: ignore[assignment]


def _unbilled_usage(period: Period) -> list[Any]:
    """Conditions on `usage_records` for usage a run of `period` may bill: accepted, up to the period's
    end, and not yet on any line. (Whether the buyer's invoice is still a draft is decided by joining
    draft invoices only.)"""
    return [
        U.c.charge_type != ChargeType.REJECTED.value,
        U.c.month <= period.months[-1],
        ~exists().where(X.c.usage_record_id == U.c.id),
    ]


def _source_period(period: Period) -> Any:
    """Usage of the period is billed as the period; earlier usage as an adjustment for its own month."""
    return case((U.c.month >= period.key, literal(period.key)), else_=U.c.month)


def agreements_overlapping(session: Session, period: Period) -> Sequence[Agreement]:
    """Agreements valid at some moment of the period: their holders get an invoice or a statement."""
    return session.scalars(
        select(Agreement).where(Agreement.valid_from < period.end, Agreement.valid_until > period.start)
    ).all()


def invoices_of_period(
    session: Session, period: str, *, status: str | None = None, lock: bool = False
) -> Sequence[Invoice]:
    """The period's invoices; with `lock`, row-locked and re-read (never stale copies)."""
    query = select(Invoice).where(Invoice.period == period)
    if status:
        query = query.where(Invoice.status == status)
    query = query.order_by(Invoice.buyer_org_id, Invoice.created_at, Invoice.id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).all()


def bulk_insert(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(model.__table__), rows)


@dataclass(frozen=True)
class UsageGroup:
    """Unbilled usage of one agreement and charge type, for one source period, summed."""

    buyer_org_id: str
    currency: str
    agreement_id: str
    product_id: str
    component: str
    source_period: str
    records: int
    amount_minor: int
    bytes_scanned: int


def unbilled_groups(session: Session, period: Period) -> list[UsageGroup]:
    """Every group of unbilled usage up to the period's end, in one scan of the usage records."""
    source = _source_period(period)
    rows = _execute_scanning_usage(
        session,
        select(
            U.c.buyer_org_id,
            U.c.currency,
            U.c.agreement_id,
            U.c.product_id,
            U.c.charge_type,
            source,
            func.count(),
            func.coalesce(func.sum(U.c.amount_minor), 0),
            func.coalesce(func.sum(U.c.bytes_scanned), 0),
        )
        .where(*_unbilled_usage(period))
        .group_by(U.c.buyer_org_id, U.c.currency, U.c.agreement_id, U.c.product_id, U.c.charge_type, source),
    )
    return [UsageGroup(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), int(r[7]), int(r[8])) for r in rows]


def existing_line_keys(session: Session, period: str) -> dict[tuple[str, str, str, str], str]:
    rows = session.execute(
        select(L.c.invoice_id, L.c.agreement_id, L.c.component, L.c.source_period, L.c.id)
        .select_from(L.join(INV, INV.c.id == L.c.invoice_id))
        .where(INV.c.period == period, INV.c.status == InvoiceStatus.DRAFT.value)
    )
    return {(r[0], r[1], r[2], r[3]): r[4] for r in rows}


def link_usage(session: Session, period: Period, held: set[tuple[str, str, str]] | None = None) -> int:
    """Link every unbilled usage record to its line on a draft invoice, in one INSERT ... SELECT.

    An agreement fixes the buyer and the currency, so (agreement, charge type, source period) on a
    draft of the period names exactly one line. Usage of the `held` (agreement, charge type, source
    period) keys is left unlinked."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # The invoices and lines were written in this transaction, so the planner's statistics say
        # they are empty and it would pick nested loops over a million rows: hash joins are right here.
        session.execute(text("SET LOCAL enable_nestloop = off"))
    source = _source_period(period)
    chosen = (
        select(U.c.id, L.c.id)
        .select_from(
            U.join(
                L,
                and_(
                    L.c.agreement_id == U.c.agreement_id,
                    L.c.component == U.c.charge_type,
                    L.c.source_period == source,
                ),
            ).join(
                INV,
                and_(
                    INV.c.id == L.c.invoice_id,
                    INV.c.period == period.key,
                    INV.c.status == InvoiceStatus.DRAFT.value,
                ),
            )
        )
        .where(*_unbilled_usage(period))
    )
    if held:
        chosen = chosen.where(
            ~or_(*(and_(U.c.agreement_id == a, U.c.charge_type == c, source == s) for a, c, s in sorted(held)))
        )
    result = _execute_scanning_usage(session, insert(X).from_select(["usage_record_id", "line_id"], chosen))
    if postgres:
        session.execute(text("SET LOCAL enable_nestloop = on"))
    return int(getattr(result, "rowcount", -1) or 0)


def _execute_scanning_usage(session: Session, statement: Any) -> Any:
    """Run a statement that reads most usage records. SQLite would walk them through an index in
    random order; `NOT INDEXED` makes it scan the table in storage order, several times faster."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return connection.execute(statement, execution_options={"preserve_rowcount": True})
    compiled = statement.compile(dialect=connection.dialect)
    sql = str(compiled).replace("FROM usage_records", "FROM usage_records NOT INDEXED", 1)
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    return connection.exec_driver_sql(sql, params)


@contextmanager
def batch_cache(session: Session) -> Iterator[None]:
    """A larger SQLite page cache for the length of a billing run (the default is 2 MB)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql("PRAGMA cache_size = -262144")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {int(before or -2000)}")


def usage_totals_by_line(session: Session, period: str) -> list[tuple[str, int, int, int]]:
    """(line, queries, amount, bytes) summed over the linked usage of the period's draft invoices."""
    rows = session.execute(
        select(
            X.c.line_id,
            func.count(),
            func.coalesce(func.sum(U.c.amount_minor), 0),
            func.coalesce(func.sum(U.c.bytes_scanned), 0),
        )
        .select_from(
            X.join(U, U.c.id == X.c.usage_record_id)
            .join(L, L.c.id == X.c.line_id)
            .join(INV, INV.c.id == L.c.invoice_id)
        )
        .where(INV.c.period == period, INV.c.status == InvoiceStatus.DRAFT.value)
        .group_by(X.c.line_id)
    )
    return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


def line_totals(session: Session, period: str) -> dict[str, tuple[int, int, int]]:
    rows = session.execute(
        select(L.c.id, L.c.quantity, L.c.amount_minor, L.c.bytes_scanned)
        .select_from(L.join(INV, INV.c.id == L.c.invoice_id))
        .where(INV.c.period == period, INV.c.status == InvoiceStatus.DRAFT.value)
    )
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def update_lines(session: Session, changes: list[dict[str, Any]]) -> None:
    if changes:
        session.execute(update(InvoiceLine), changes)


def refresh_draft_totals(session: Session, period: str, now: datetime) -> None:
    """Each draft invoice's total is the sum of its lines."""
    total = select(func.coalesce(func.sum(L.c.amount_minor), 0)).where(L.c.invoice_id == INV.c.id).scalar_subquery()
    session.execute(
        update(INV)
        .where(INV.c.period == period, INV.c.status == InvoiceStatus.DRAFT.value)
        .values(total_minor=total, updated_at=now)
    )


# -- invoices -------------------------------------------------------------------------------------


def get_invoice(session: Session, invoice_id: str, *, lock: bool = False) -> Invoice | None:
    """The invoice; with `lock`, row-locked and re-read from the database (never a stale copy)."""
    query = select(Invoice).where(Invoice.id == invoice_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def list_invoices(
    session: Session,
    *,
    buyer_org_id: str | None = None,
    status: str | None = None,
    period: str | None = None,
    overdue_at: datetime | None = None,
    limit: int = 100,
    after: Key | None = None,
) -> Sequence[Invoice]:
    """Invoices newest period first (then newest created, then id, all descending), after the key `after`."""
    query = select(Invoice)
    if buyer_org_id:
        query = query.where(Invoice.buyer_org_id == buyer_org_id)
    if status:
        query = query.where(Invoice.status == status)
    if period:
        query = query.where(Invoice.period == period)
    if overdue_at is not None:
        query = query.where(
            Invoice.status == InvoiceStatus.FINALIZED.value,
            Invoice.due_at < overdue_at,
            Invoice.total_minor - Invoice.credited_minor - Invoice.paid_minor > 0,
        )
    order = (Invoice.period, Invoice.created_at, Invoice.id)
    if after is not None:
        query = query.where(after_key(order, after, descending=True))
    return session.scalars(query.order_by(*(c.desc() for c in order)).limit(limit)).all()


def lines_of(session: Session, invoice_ids: Sequence[str]) -> Sequence[InvoiceLine]:
    if not invoice_ids:
        return []
    return session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id.in_(invoice_ids))
        .order_by(InvoiceLine.invoice_id, InvoiceLine.source_period, InvoiceLine.agreement_id, InvoiceLine.component)
    ).all()


def usage_of_line(session: Session, line_id: str, limit: int, after: Key | None) -> Sequence[UsageRecord]:
    """A line's usage records, oldest first (then by id), after the key `after`."""
    order = (UsageRecord.created_at, UsageRecord.id)
    query = (
        select(UsageRecord)
        .join(InvoiceLineUsage, InvoiceLineUsage.usage_record_id == UsageRecord.id)
        .where(InvoiceLineUsage.line_id == line_id)
    )
    if after is not None:
        query = query.where(after_key(order, after, descending=False))
    return session.scalars(query.order_by(*order).limit(limit)).all()


def get_line(session: Session, line_id: str) -> InvoiceLine | None:
    return session.get(InvoiceLine, line_id)


def org(session: Session, org_id: str | None) -> Organisation | None:
    return session.get(Organisation, org_id) if org_id else None


def product_slugs(session: Session, product_ids: set[str]) -> dict[str, str]:
    """Product id to slug."""
    if not product_ids:
        return {}
    return {r[0]: r[1] for r in session.execute(select(Product.id, Product.slug).where(Product.id.in_(product_ids)))}


def invoice_numbers(session: Session, invoice_ids: set[str]) -> dict[str, str | None]:
    """Invoice id to number (None while a draft)."""
    if not invoice_ids:
        return {}
    rows = session.execute(select(Invoice.id, Invoice.number).where(Invoice.id.in_(invoice_ids)))
    return {r[0]: r[1] for r in rows}


def org_names(session: Session, org_ids: set[str]) -> dict[str, str]:
    if not org_ids:
        return {}
    rows = session.execute(select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids)))
    return {r[0]: r[1] for r in rows}


def product(session: Session, product_id: str) -> Product | None:
    return session.get(Product, product_id)


def product_by_slug(session: Session, slug: str) -> Product | None:
    return session.scalars(select(Product).where(Product.slug == slug)).one_or_none()


def product_titles(session: Session, product_ids: set[str]) -> dict[str, str]:
    if not product_ids:
        return {}
    rows = session.execute(select(Product.id, Product.title).where(Product.id.in_(product_ids)))
    return {r[0]: r[1] for r in rows}


def agreement(session: Session, agreement_id: str) -> Agreement | None:
    return session.get(Agreement, agreement_id)


def agreements_by_id(session: Session, ids: set[str]) -> dict[str, Agreement]:
    if not ids:
        return {}
    return {a.id: a for a in session.scalars(select(Agreement).where(Agreement.id.in_(ids)))}


def platform_org_id(session: Session) -> str | None:
    return session.scalars(
        select(Organisation.id).where(Organisation.kind == OrgKind.PLATFORM.value).order_by(Organisation.created_at)
    ).first()


# -- credit notes and payments --------------------------------------------------------------------


def credit_notes_of(session: Session, invoice_id: str) -> Sequence[CreditNote]:
    return session.scalars(
        select(CreditNote).where(CreditNote.invoice_id == invoice_id).order_by(CreditNote.created_at)
    ).all()


def list_credit_notes(session: Session, buyer_org_id: str | None) -> Sequence[CreditNote]:
    query = select(CreditNote).join(Invoice, Invoice.id == CreditNote.invoice_id)
    if buyer_org_id:
        query = query.where(Invoice.buyer_org_id == buyer_org_id)
    return session.scalars(query.order_by(CreditNote.created_at.desc())).all()


def payments_of(session: Session, invoice_id: str) -> Sequence[Payment]:
    return session.scalars(select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.created_at)).all()


def list_payments(session: Session, buyer_org_id: str | None, status: str | None = None) -> Sequence[Payment]:
    query = select(Payment)
    if buyer_org_id:
        query = query.where(Payment.buyer_org_id == buyer_org_id)
    if status:
        query = query.where(Payment.status == status)
    return session.scalars(query.order_by(Payment.created_at.desc())).all()


def payment_by_intent(session: Session, intent_id: str) -> Payment | None:
    return session.scalars(
        select(Payment).where(Payment.stripe_payment_intent_id == intent_id, Payment.amount_minor > 0)
    ).first()


def get_payment(session: Session, payment_id: str, *, lock: bool = False) -> Payment | None:
    query = select(Payment).where(Payment.id == payment_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def pending_stripe_payments(session: Session) -> Sequence[Payment]:
    return session.scalars(
        select(Payment).where(Payment.method == "stripe", Payment.status == PaymentStatus.PENDING.value)
    ).all()


def stripe_customer(session: Session, org_id: str) -> StripeCustomer | None:
    return session.get(StripeCustomer, org_id)
