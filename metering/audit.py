"""Supervision: the regulator reads every query on the platform and flags queries for follow-up."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, NotFound
from metering import repository
from metering.models import Agreement, AuditFlag, Purpose, UsageRecord
from metering.repository import UsageFilter
from metering.schemas import AuditRecordOut, FlagOut
from products import repository as products_repo


def audit_filter(
    session: Session,
    actor: Principal,
    *,
    product_slug: str | None,
    buyer_org_id: str | None,
    purpose: Purpose | None,
    since: datetime | None,
    until: datetime | None,
    flagged_only: bool,
) -> UsageFilter:
    """The regulator's filter over every usage record on the platform."""
    actor.require(Role.REGULATOR)
    product_ids = None
    if product_slug is not None:
        product = products_repo.by_slug(session, product_slug)
        if product is None:
            raise NotFound("product_not_found", slug=product_slug)
        product_ids = [product.id]
    return UsageFilter(
        buyer_org_id=buyer_org_id,
        product_ids=product_ids,
        purpose=purpose.value if purpose else None,
        since=since,
        until=until,
        flagged_only=flagged_only,
    )


def page(
    session: Session, where: UsageFilter, *, limit: int, before: tuple[datetime, str] | None
) -> Sequence[UsageRecord]:
    return repository.usage_page(session, where, limit=limit, before=before)


def present(session: Session, records: Sequence[UsageRecord]) -> list[AuditRecordOut]:
    """Who ran what under which agreement and purpose, the result's shape, and any flags."""
    buyers = repository.org_names(session, [r.buyer_org_id for r in records])
    slugs = {p.id: p.slug for p in repository.products_by_id(session, [r.product_id for r in records]).values()}
    scenarios = {
        a.id: a.scenario
        for a in repository.agreements_where(session, Agreement.id.in_({r.agreement_id for r in records}))
    }
    flags = repository.flags_of(session, [r.id for r in records])
    return [
        AuditRecordOut(
            id=r.id,
            created_at=r.created_at,
            finished_at=r.finished_at,
            buyer_org_id=r.buyer_org_id,
            buyer=buyers.get(r.buyer_org_id, ""),
            user_id=r.user_id,
            agreement_id=r.agreement_id,
            product=slugs.get(r.product_id, r.product_id),
            purpose=r.purpose,
            scenario=scenarios.get(r.agreement_id, ""),
            sql=r.sql,
            sql_run=r.sql_run,
            error_code=r.error_code,
            result_columns=[str(c) for c in r.result_columns],
            result_rows=r.result_rows,
            suppressed_groups=r.suppressed_groups,
            rows_scanned=r.rows_scanned,
            bytes_scanned=r.bytes_scanned,
            charge_type=r.charge_type,
            amount_minor=r.amount_minor,
            currency=r.currency,
            flags=[FlagOut.model_validate(f) for f in flags[r.id]],
            privacy_rho_nano=r.privacy_rho_nano,
        )
        for r in records
    ]


def resolve_flag(session: Session, actor: Principal, flag_id: str, resolution: str) -> AuditFlag:
    """The regulator closes a follow-up with what it found; a flag is resolved once."""
    actor.require(Role.REGULATOR)
    audit_flag = session.get(AuditFlag, flag_id)
    if audit_flag is None:
        raise NotFound("audit_flag_not_found", flag=flag_id)
    if audit_flag.resolved_at is not None:
        raise Conflict("audit_flag_resolved", flag=flag_id)
    audit_flag.resolved_at = utcnow()
    audit_flag.resolved_by = actor.user_id
    audit_flag.resolution = resolution.strip()
    session.flush()
    return audit_flag


def flag(session: Session, actor: Principal, record_id: str, reason: str) -> AuditFlag:
    """The regulator marks a query for follow-up; the usage record itself is never changed."""
    actor.require(Role.REGULATOR)
    if session.get(UsageRecord, record_id) is None:
        raise NotFound("usage_record_not_found", record=record_id)
    audit_flag = AuditFlag(usage_record_id=record_id, flagged_by=actor.user_id, reason=reason.strip())
    session.add(audit_flag)
    session.flush()
    return audit_flag
