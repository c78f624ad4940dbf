"""All SQL for access requests, agreements, monthly counters and usage records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from market.db import insert_ignore
from metering.models import AccessRequest, Agreement, AgreementMonth, AgreementStatus, UsageRecord


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


def agreements_of_buyer(session: Session, buyer_org_id: str) -> Sequence[Agreement]:
    return session.scalars(
        select(Agreement).where(Agreement.buyer_org_id == buyer_org_id).order_by(Agreement.created_at.desc())
    ).all()


def agreements_for_products(session: Session, product_ids: Sequence[str]) -> Sequence[Agreement]:
    return session.scalars(
        select(Agreement).where(Agreement.product_id.in_(product_ids)).order_by(Agreement.created_at.desc())
    ).all()


def all_agreements(session: Session) -> Sequence[Agreement]:
    return session.scalars(select(Agreement).order_by(Agreement.created_at.desc())).all()


def requests_where(session: Session, *conditions: object) -> Sequence[AccessRequest]:
    return session.scalars(select(AccessRequest).where(*conditions).order_by(AccessRequest.created_at.desc())).all()  # type: ignore[arg-type]


def by_idempotency_key(session: Session, buyer_org_id: str, key: str) -> UsageRecord | None:
    return session.scalars(
        select(UsageRecord).where(UsageRecord.buyer_org_id == buyer_org_id, UsageRecord.idempotency_key == key)
    ).one_or_none()


def month_counter(session: Session, agreement_id: str, month: str) -> AgreementMonth | None:
    return session.scalars(
        select(AgreementMonth).where(AgreementMonth.agreement_id == agreement_id, AgreementMonth.month == month)
    ).one_or_none()


def lock_month(session: Session, agreement_id: str, month: str) -> AgreementMonth:
    """The agreement's counter row for `month`, created if missing and write-locked until commit.

    The first statement is an UPDATE, which takes the row lock on PostgreSQL and the database
    write lock on SQLite, so concurrent queries of one agreement decide quota and cap one at a time.
    """
    insert_ignore(
        session,
        AgreementMonth.__table__,
        {
            "agreement_id": agreement_id,
            "month": month,
            "accepted_queries": 0,
            "charged_minor": 0,
            "lock_version": 0,
        },
        ["agreement_id", "month"],
    )
    session.execute(
        update(AgreementMonth)
        .where(AgreementMonth.agreement_id == agreement_id, AgreementMonth.month == month)
        .values(lock_version=AgreementMonth.lock_version + 1)
    )
    counter = session.scalars(
        select(AgreementMonth)
        .where(AgreementMonth.agreement_id == agreement_id, AgreementMonth.month == month)
        .execution_options(populate_existing=True)
    ).one()
    return counter


def usage_page(
    session: Session, buyer_org_id: str, *, limit: int, before: tuple[datetime, str] | None
) -> Sequence[UsageRecord]:
    query = select(UsageRecord).where(UsageRecord.buyer_org_id == buyer_org_id)
    if before is not None:
        created_at, record_id = before
        query = query.where(
            (UsageRecord.created_at < created_at)
            | ((UsageRecord.created_at == created_at) & (UsageRecord.id < record_id))
        )
    return session.scalars(query.order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc()).limit(limit)).all()
