"""The regulator's dashboard figures: queries by purpose over time (free public-interest against paid),
revenue per operator against its allowed revenue, products per zone, overdue reviews.

Every function is the regulator's alone (`forbidden_role` for anyone else) and reads the same tables the
API's audit, allowed-revenue and review routes read; the console draws and exports these figures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.compliance import allowed_revenue
from metering.models import AccessRequest, ChargeType, Purpose, RequestStatus, UsageRecord
from products.governance import repository as governance_repo
from products.governance.models import DataResource, ResourceStatus
from products.models import Product, ProductStatus

PUBLIC_INTEREST = frozenset({Purpose.PUBLIC_GOVERNANCE.value, Purpose.PUBLIC_WELFARE.value})


@dataclass(frozen=True)
class PurposeDay:
    """Answered queries of one purpose on one UTC day, and what they were charged."""

    day: date
    purpose: str
    queries: int
    amount_minor: int
    currency: str

    @property
    def public_interest(self) -> bool:
        return self.purpose in PUBLIC_INTEREST


@dataclass(frozen=True)
class OperatorRevenue:
    """One operator's revenue received in a year against its allowed revenue (the one revenue rule)."""

    operator_org_id: str
    operator: str
    year: int
    currency: str
    received_minor: int
    allowed_minor: int | None
    used_basis_points: int | None
    warning: str


@dataclass(frozen=True)
class ZoneProducts:
    """Products of one zone by state."""

    zone: str
    listed: int
    in_review: int
    other: int


@dataclass(frozen=True)
class OverdueReview:
    """A review past its deadline: a submitted product, a public-interest access request."""

    kind: str
    subject: str
    who: str
    due_at: datetime
    days_overdue: int
    link: str


def _day(column: Any, session: Session) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def queries_by_purpose(session: Session, actor: Principal, since: date, until: date) -> list[PurposeDay]:
    """Answered queries (refused attempts left out) per UTC day and purpose, from `since` to `until` inclusive."""
    actor.require(Role.REGULATOR)
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    day = _day(UsageRecord.created_at, session)
    rows = session.execute(
        select(day, UsageRecord.purpose, UsageRecord.currency, func.count(), func.sum(UsageRecord.amount_minor))
        .where(
            UsageRecord.created_at >= start,
            UsageRecord.created_at < end,
            UsageRecord.charge_type != ChargeType.REJECTED.value,
        )
        .group_by(day, UsageRecord.purpose, UsageRecord.currency)
    ).all()
    found = [PurposeDay(_as_date(d), str(p), int(n), int(total or 0), str(cur)) for d, p, cur, n, total in rows]
    return sorted(found, key=lambda r: (r.day, r.purpose, r.currency))


def public_interest_share(rows: list[PurposeDay]) -> tuple[int, int]:
    """Free public-interest queries and paid (industry, commercial) queries among `rows`."""
    public = sum(r.queries for r in rows if r.public_interest)
    return public, sum(r.queries for r in rows) - public


def operator_revenue(session: Session, actor: Principal, year: int) -> list[OperatorRevenue]:
    """Every authorised operator's revenue received in `year`, with its allowed revenue (if recorded)."""
    actor.require(Role.REGULATOR)
    operators: dict[str, str] = {}
    for grant in governance_repo.authorisations(session):
        operators.setdefault(grant.operator_org_id, grant.currency)
    names = {
        org.id: org.name for org in session.scalars(select(Organisation).where(Organisation.id.in_(set(operators))))
    }
    out = []
    for org_id, currency in operators.items():
        row = allowed_revenue.figures_row(session, org_id, year)
        received = allowed_revenue.received_minor(session, org_id, year)
        allowed = allowed_revenue.figures(session, row).allowed if row is not None else None
        used, warning = allowed_revenue.warning_level(received, allowed) if allowed is not None else (None, "none")
        out.append(
            OperatorRevenue(
                operator_org_id=org_id,
                operator=names.get(org_id, org_id),
                year=year,
                currency=row.currency if row is not None else currency,
                received_minor=received,
                allowed_minor=allowed,
                used_basis_points=used,
                warning=warning,
            )
        )
    return sorted(out, key=lambda r: r.operator)


def products_per_zone(session: Session, actor: Principal) -> list[ZoneProducts]:
    """Products per zone: listed, in review (submitted or a new version pending), and the rest."""
    actor.require(Role.REGULATOR)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for zone, status, pending in session.execute(select(Product.zone, Product.status, Product.pending_version_id)):
        if status == ProductStatus.SUBMITTED.value or (status == ProductStatus.LISTED.value and pending):
            counts[zone][1] += 1
        if status == ProductStatus.LISTED.value:
            counts[zone][0] += 1
        elif status != ProductStatus.SUBMITTED.value:
            counts[zone][2] += 1
    return [ZoneProducts(zone, *values) for zone, values in sorted(counts.items())]


def overdue_reviews(session: Session, actor: Principal) -> list[OverdueReview]:
    """Product reviews and public-interest access requests past their deadline, the longest overdue first."""
    actor.require(Role.REGULATOR)
    now = utcnow()
    found: list[OverdueReview] = []
    products = session.scalars(
        select(Product).where(Product.pending_version_id.is_not(None), Product.review_due_at < now)
    ).all()
    operators = {p.operator_org_id for p in products}
    requests = session.scalars(
        select(AccessRequest).where(
            AccessRequest.status == RequestStatus.PENDING.value,
            AccessRequest.reviewer_role == Role.REGULATOR.value,
            AccessRequest.review_due_at < now,
        )
    ).all()
    orgs = operators | {r.buyer_org_id for r in requests}
    names = {o.id: o.name for o in session.scalars(select(Organisation).where(Organisation.id.in_(orgs)))}
    for product in products:
        assert product.review_due_at is not None
        found.append(
            OverdueReview(
                "product_review",
                product.slug,
                names.get(product.operator_org_id, ""),
                product.review_due_at,
                (now - product.review_due_at).days,
                f"/console/regulator/reviews/{product.slug}",
            )
        )
    slugs = {
        p.id: p.slug for p in session.scalars(select(Product).where(Product.id.in_({r.product_id for r in requests})))
    }
    for request in requests:
        assert request.review_due_at is not None
        found.append(
            OverdueReview(
                "access_request",
                slugs.get(request.product_id, request.product_id),
                names.get(request.buyer_org_id, ""),
                request.review_due_at,
                (now - request.review_due_at).days,
                f"/console/regulator/requests/{request.id}",
            )
        )
    return sorted(found, key=lambda r: (r.due_at, r.subject))


def pending_resources(session: Session, actor: Principal) -> int:
    """Resources waiting for the regulator's registration review."""
    actor.require(Role.REGULATOR)
    return int(
        session.scalar(
            select(func.count()).select_from(DataResource).where(DataResource.status == ResourceStatus.PENDING.value)
        )
        or 0
    )
