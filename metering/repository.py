"""All SQL for access requests, agreements, monthly counters, usage records, audit flags and settings."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Date, Table, cast, func, select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation
from market.db import Upsert, upsert_locked_row
from metering.models import (
    AccessRequest,
    Agreement,
    AgreementMonth,
    AgreementStatus,
    AuditFlag,
    ProductAccessSettings,
    RequestStatus,
    UsageRecord,
)
from products.models import PricePlan, Product

# -- access requests and agreements ---------------------------------------------------------------


def active_agreement(session: Session, buyer_org_id: str, product_id: str, now: datetime) -> Agreement | None:
    return session.scalars(
        select(Agreement)
        .where(
            Agreement.buyer_org_id == buyer_org_id,
            Agreement.product_id == product_id,
            Agreement.status == AgreementStatus.ACTIVE.value,
            Agreement.valid_from <= now,
            Agreement.valid_until > now,
        )
        .order_by(Agreement.created_at.desc())
        .limit(1)
    ).first()


def latest_agreement(session: Session, buyer_org_id: str, product_id: str) -> Agreement | None:
    """The buyer's most recent agreement on the product, whatever its state."""
    return session.scalars(
        select(Agreement)
        .where(Agreement.buyer_org_id == buyer_org_id, Agreement.product_id == product_id)
        .order_by(Agreement.created_at.desc())
        .limit(1)
    ).first()


def agreements_where(session: Session, *conditions: ColumnElement[bool]) -> Sequence[Agreement]:
    return session.scalars(select(Agreement).where(*conditions).order_by(Agreement.created_at.desc())).all()


def agreement_of_request(session: Session, request_id: str) -> Agreement | None:
    return session.scalars(select(Agreement).where(Agreement.request_id == request_id)).one_or_none()


def agreements_of_requests(session: Session, request_ids: Sequence[str]) -> dict[str, str]:
    if not request_ids:
        return {}
    rows = session.execute(select(Agreement.request_id, Agreement.id).where(Agreement.request_id.in_(request_ids)))
    return {request_id: agreement_id for request_id, agreement_id in rows}


def requests_where(session: Session, *conditions: ColumnElement[bool]) -> Sequence[AccessRequest]:
    return session.scalars(select(AccessRequest).where(*conditions).order_by(AccessRequest.created_at.desc())).all()


def pending_request(session: Session, buyer_org_id: str, product_id: str, purpose: str) -> AccessRequest | None:
    return session.scalars(
        select(AccessRequest).where(
            AccessRequest.buyer_org_id == buyer_org_id,
            AccessRequest.product_id == product_id,
            AccessRequest.purpose == purpose,
            AccessRequest.status == RequestStatus.PENDING.value,
        )
    ).first()


def products_by_id(session: Session, product_ids: Sequence[str]) -> dict[str, Product]:
    if not product_ids:
        return {}
    return {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(set(product_ids))))}


def plans_by_id(session: Session, plan_ids: Sequence[str]) -> dict[str, PricePlan]:
    if not plan_ids:
        return {}
    return {p.id: p for p in session.scalars(select(PricePlan).where(PricePlan.id.in_(set(plan_ids))))}


def org_names(session: Session, org_ids: Sequence[str]) -> dict[str, str]:
    if not org_ids:
        return {}
    rows = session.execute(select(Organisation.id, Organisation.name).where(Organisation.id.in_(set(org_ids))))
    return {org_id: name for org_id, name in rows}


def access_settings(session: Session, product_id: str) -> ProductAccessSettings | None:
    return session.get(ProductAccessSettings, product_id)


# -- idempotency and the monthly counter -----------------------------------------------------------


def by_idempotency_key(session: Session, buyer_org_id: str, key: str) -> UsageRecord | None:
    return session.scalars(
        select(UsageRecord)
        .where(UsageRecord.buyer_org_id == buyer_org_id, UsageRecord.idempotency_key == key)
        .execution_options(populate_existing=True)
    ).one_or_none()


def month_counter(session: Session, agreement_id: str, month: str) -> AgreementMonth | None:
    return session.scalars(
        select(AgreementMonth).where(AgreementMonth.agreement_id == agreement_id, AgreementMonth.month == month)
    ).one_or_none()


@dataclass
class MonthCounter:
    """An agreement's counter row for one month as read under its lock (`lock_month`): rated against,
    advanced in place (metering.attempts.rate_and_count) and written back with the usage record
    (metering.attempts.append), in the same transaction."""

    id: int
    accepted_queries: int
    charged_minor: int
    rows_scanned: int
    bytes_scanned: int
    per_gb_carry: str


_MONTHS = typing.cast(Table, AgreementMonth.__table__)
_MONTH_COLUMNS = [
    _MONTHS.c.id,
    _MONTHS.c.accepted_queries,
    _MONTHS.c.charged_minor,
    _MONTHS.c.rows_scanned,
    _MONTHS.c.bytes_scanned,
    _MONTHS.c.per_gb_carry,
]


def lock_month(session: Session, agreement_id: str, month: str) -> MonthCounter:
    """The agreement's counter row for `month`, created if missing and write-locked until commit.

    One upsert with RETURNING (market.db.upsert_locked_row, Core: no ORM object): it takes the row
    lock on PostgreSQL (and needs the database write lock on SQLite, see market.db.begin_write), so
    concurrent queries of one agreement decide quota and cap one at a time, and it returns the
    committed totals.
    """
    u = month_upsert(agreement_id, month)
    return MonthCounter(*upsert_locked_row(session, u.table, u.values, u.conflict_columns, u.touch, u.columns))


def month_upsert(agreement_id: str, month: str) -> Upsert:
    """`lock_month`'s statement, to run with others in one round trip (market.db.upsert_locked_rows)."""
    return Upsert(
        _MONTHS,
        {
            "agreement_id": agreement_id,
            "month": month,
            "accepted_queries": 0,
            "charged_minor": 0,
            "rows_scanned": 0,
            "bytes_scanned": 0,
            "per_gb_carry": "0",
            "lock_version": 0,
        },
        ["agreement_id", "month"],
        "lock_version",
        _MONTH_COLUMNS,
    )


# -- usage views -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFilter:
    """Which usage records a view shows. Tenancy (buyer or products) is always set by the service."""

    buyer_org_id: str | None = None
    product_ids: Sequence[str] | None = None
    purpose: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    flagged_only: bool = False

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.buyer_org_id is not None:
            where.append(UsageRecord.buyer_org_id == self.buyer_org_id)
        if self.product_ids is not None:
            where.append(UsageRecord.product_id.in_(self.product_ids))
        if self.purpose is not None:
            where.append(UsageRecord.purpose == self.purpose)
        if self.since is not None:
            where.append(UsageRecord.created_at >= self.since)
        if self.until is not None:
            where.append(UsageRecord.created_at < self.until)
        if self.flagged_only:
            where.append(UsageRecord.id.in_(select(AuditFlag.usage_record_id)))
        return where


def usage_page(
    session: Session, where: UsageFilter, *, limit: int, before: tuple[datetime, str] | None
) -> Sequence[UsageRecord]:
    """Records matching `where`, newest first, after the cursor `before`."""
    query = select(UsageRecord).where(*where.conditions())
    if before is not None:
        created_at, record_id = before
        query = query.where(
            (UsageRecord.created_at < created_at)
            | ((UsageRecord.created_at == created_at) & (UsageRecord.id < record_id))
        )
    return session.scalars(query.order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc()).limit(limit)).all()


def _day(session: Session) -> Any:
    """The UTC calendar day of a record, as SQL, on SQLite (stored as UTC text) and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", UsageRecord.created_at), Date)
    return func.substr(UsageRecord.created_at, 1, 10)


def daily_summary(session: Session, where: UsageFilter) -> Sequence[Any]:
    """Per day, product, charge type and currency: query count, scanned volume and amount."""
    day = _day(session).label("day")
    query = (
        select(
            day,
            UsageRecord.product_id,
            UsageRecord.charge_type,
            UsageRecord.currency,
            func.count().label("queries"),
            func.sum(UsageRecord.rows_scanned).label("rows_scanned"),
            func.sum(UsageRecord.bytes_scanned).label("bytes_scanned"),
            func.sum(UsageRecord.amount_minor).label("amount_minor"),
            func.sum(UsageRecord.privacy_rho_nano).label("privacy_rho_nano"),
            func.sum(UsageRecord.privacy_delta_atto).label("privacy_delta_atto"),
        )
        .where(*where.conditions())
        .group_by(day, UsageRecord.product_id, UsageRecord.charge_type, UsageRecord.currency)
        .order_by(day.desc(), UsageRecord.product_id, UsageRecord.charge_type)
    )
    return session.execute(query).all()


def flags_of(session: Session, record_ids: Sequence[str]) -> dict[str, list[AuditFlag]]:
    flags: dict[str, list[AuditFlag]] = {rid: [] for rid in record_ids}
    if record_ids:
        for flag in session.scalars(
            select(AuditFlag).where(AuditFlag.usage_record_id.in_(record_ids)).order_by(AuditFlag.created_at)
        ):
            flags[flag.usage_record_id].append(flag)
    return flags
