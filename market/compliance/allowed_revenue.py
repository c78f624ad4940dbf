"""Allowed revenue (最高准许收入): permitted costs by category, net of subsidies, plus permitted
profit and taxes, less last year's excess. Derived from the regulator's figures, never typed in.

Revenue received is what buyers paid for the operator's products in the year (every payment and
refund on them, all parties' parts together, dated when the money was received). Past 80% of the
allowed figure the operator, finance and the regulator are warned, again at 100%; once the year
has ended, an excess is recorded as a carry-forward deducted from the next year's figure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.models import Distribution, Payment
from market.accounts.models import Organisation, OrgKind, Role
from market.accounts.service import Principal
from market.clock import new_id, utcnow
from market.compliance.models import AllowedRevenue, RevenueCarryForward
from market.compliance.schemas import AllowedRevenueIn, AllowedRevenueOut, CarryForwardOut
from market.db import insert_ignore
from market.errors import Conflict, NotFound
from market.notifications import service as notifications
from metering.models import Agreement
from products.models import Product

WARN_BASIS_POINTS = 8_000
FULL = 10_000
COST_FIELDS = ("platform_cost_minor", "collection_cost_minor", "processing_cost_minor", "staff_cost_minor")


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def received_by_product(session: Session, operator_org_id: str, year: int) -> dict[str, int]:
    """Money received in `year` for each of the operator's products (product id -> minor units)."""
    start, end = year_bounds(year)
    received_at = func.coalesce(Payment.received_at, Payment.created_at)
    rows = session.execute(
        select(Agreement.product_id, func.sum(Distribution.amount_minor))
        .join(Payment, Payment.id == Distribution.payment_id)
        .join(Agreement, Agreement.id == Distribution.agreement_id)
        .join(Product, Product.id == Agreement.product_id)
        .where(Product.operator_org_id == operator_org_id, received_at >= start, received_at < end)
        .group_by(Agreement.product_id)
    ).all()
    return {product_id: int(total or 0) for product_id, total in rows}


def received_minor(session: Session, operator_org_id: str, year: int) -> int:
    """Revenue received from paid use of the operator's products in `year`, minor units."""
    return sum(received_by_product(session, operator_org_id, year).values())


def carry_forward_into(session: Session, operator_org_id: str, year: int) -> RevenueCarryForward | None:
    """Last year's excess, deducted from `year`'s allowed revenue, if recorded."""
    return carry_forward_from(session, operator_org_id, year - 1)


def carry_forward_from(session: Session, operator_org_id: str, year: int) -> RevenueCarryForward | None:
    """The carry-forward recorded when `year` was closed; None while it is open."""
    return session.scalars(
        select(RevenueCarryForward).where(
            RevenueCarryForward.operator_org_id == operator_org_id, RevenueCarryForward.from_year == year
        )
    ).first()


def figures_row(session: Session, operator_org_id: str, year: int) -> AllowedRevenue | None:
    """The regulator's figures for the operator and year, if recorded."""
    return session.scalars(
        select(AllowedRevenue).where(AllowedRevenue.operator_org_id == operator_org_id, AllowedRevenue.year == year)
    ).first()


@dataclass(frozen=True)
class Figures:
    permitted_costs: int
    deduction: int
    allowed: int


def figures(session: Session, row: AllowedRevenue) -> Figures:
    """Derive the allowed revenue: costs less subsidies, plus profit and taxes, less last year's excess (at least 0)."""
    costs = sum(int(getattr(row, name)) for name in COST_FIELDS) - row.subsidies_minor
    carried = carry_forward_into(session, row.operator_org_id, row.year)
    deduction = carried.excess_minor if carried else 0
    return Figures(costs, deduction, max(costs + row.profit_minor + row.taxes_minor - deduction, 0))


def _operator(session: Session, org_id: str) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or org.kind != OrgKind.OPERATOR.value:
        raise NotFound("operator_not_found", org=org_id)
    return org


def record(
    session: Session, actor: Principal, operator_org_id: str, year: int, data: AllowedRevenueIn
) -> AllowedRevenue:
    """The regulator records (or corrects) an operator's cost, profit and tax figures for a year."""
    actor.require(Role.REGULATOR)
    _operator(session, operator_org_id)
    if carry_forward_from(session, operator_org_id, year) is not None:
        raise Conflict("allowed_revenue_closed", year=year)
    row = figures_row(session, operator_org_id, year)
    if row is None:
        row = AllowedRevenue(operator_org_id=operator_org_id, year=year, set_by=actor.user_id)
        session.add(row)
    for name, value in data.model_dump().items():
        setattr(row, name, value)
    row.set_by = actor.user_id
    row.updated_at = utcnow()
    session.flush()
    return row


def _readable(actor: Principal, operator_org_id: str) -> bool:
    if actor.role in (Role.REGULATOR, Role.FINANCE):
        return True
    return actor.role == Role.OPERATOR and actor.org_id == operator_org_id


def visible(session: Session, actor: Principal, year: int | None = None) -> list[AllowedRevenue]:
    """The regulator and finance see every operator's figures; an operator its own."""
    actor.require(Role.REGULATOR, Role.FINANCE, Role.OPERATOR)
    query = select(AllowedRevenue)
    if actor.role == Role.OPERATOR:
        query = query.where(AllowedRevenue.operator_org_id == actor.org_id)
    if year is not None:
        query = query.where(AllowedRevenue.year == year)
    return list(session.scalars(query.order_by(AllowedRevenue.year, AllowedRevenue.operator_org_id)).all())


def get_visible(session: Session, actor: Principal, operator_org_id: str, year: int) -> AllowedRevenue:
    """One operator's figures for a year, if the caller may read them (else 404)."""
    actor.require(Role.REGULATOR, Role.FINANCE, Role.OPERATOR)
    row = figures_row(session, operator_org_id, year)
    if row is None or not _readable(actor, operator_org_id):
        raise NotFound("allowed_revenue_not_found", operator=operator_org_id, year=year)
    return row


def warning_level(received: int, allowed: int) -> tuple[int, str]:
    """Basis points of the allowed revenue used, and `none`, `approaching` (>= 80%) or `exceeded` (>= 100%)."""
    if allowed <= 0:
        return (FULL if received > 0 else 0), ("exceeded" if received > 0 else "none")
    used = received * FULL // allowed
    if used >= FULL:
        return used, "exceeded"
    return used, "approaching" if used >= WARN_BASIS_POINTS else "none"


def present(session: Session, row: AllowedRevenue) -> AllowedRevenueOut:
    derived = figures(session, row)
    received = received_minor(session, row.operator_org_id, row.year)
    used, warning = warning_level(received, derived.allowed)
    closed = carry_forward_from(session, row.operator_org_id, row.year)
    org = session.get(Organisation, row.operator_org_id)
    return AllowedRevenueOut(
        **{name: getattr(row, name) for name in AllowedRevenueIn.model_fields},
        operator=row.operator_org_id,
        operator_name=org.name if org else "",
        year=row.year,
        permitted_costs_minor=derived.permitted_costs,
        carried_deduction_minor=derived.deduction,
        allowed_minor=derived.allowed,
        received_minor=received,
        headroom_minor=derived.allowed - received,
        used_basis_points=used,
        warning=warning,
        carry_forward=CarryForwardOut.model_validate(closed) if closed else None,
    )


def close_year(session: Session, operator_org_id: str, year: int, now: datetime | None = None) -> RevenueCarryForward:
    """Record the year's excess (0 if none) as a carry-forward into the next year; only once the year has ended."""
    now = now or utcnow()
    if now < year_bounds(year)[1]:
        raise Conflict("year_not_ended", year=year)
    row = figures_row(session, operator_org_id, year)
    if row is None:
        raise NotFound("allowed_revenue_not_found", operator=operator_org_id, year=year)
    allowed = figures(session, row).allowed
    received = received_minor(session, operator_org_id, year)
    insert_ignore(
        session,
        RevenueCarryForward.__table__,
        {
            "id": new_id("cfw"),
            "operator_org_id": operator_org_id,
            "from_year": year,
            "to_year": year + 1,
            "currency": row.currency,
            "allowed_minor": allowed,
            "received_minor": received,
            "excess_minor": max(received - allowed, 0),
            "recorded_at": now,
        },
        ["operator_org_id", "from_year"],
    )
    session.flush()
    closed = carry_forward_from(session, operator_org_id, year)
    assert closed is not None
    return closed


def close_for(session: Session, actor: Principal, operator_org_id: str, year: int) -> RevenueCarryForward:
    """The regulator or finance closes an ended year by hand (the upkeep job also does it)."""
    actor.require(Role.REGULATOR, Role.FINANCE)
    return close_year(session, operator_org_id, year)


def watch(session: Session, now: datetime) -> dict[str, int]:
    """Warn at 80% and 100% of this year's allowed revenue; close every ended year not yet closed."""
    counts: dict[str, int] = defaultdict(int)
    for row in session.scalars(select(AllowedRevenue).where(AllowedRevenue.year <= now.year)).all():
        if row.year < now.year:
            if carry_forward_from(session, row.operator_org_id, row.year) is None:
                close_year(session, row.operator_org_id, row.year, now)
                counts["years_closed"] += 1
            continue
        out = present(session, row)
        if out.warning == "none":
            continue
        users = [
            *notifications.users_of_orgs(session, [row.operator_org_id]),
            *notifications.users_with_roles(session, Role.FINANCE, Role.REGULATOR),
        ]
        counts["revenue_warnings"] += notifications.notify(
            session,
            users,
            f"allowed_revenue_{out.warning}",
            f"allowed-revenue:{row.operator_org_id}:{row.year}:{out.warning}",
            {
                "operator": out.operator_name,
                "year": row.year,
                "received": out.received_minor,
                "allowed": out.allowed_minor,
                "currency": row.currency,
                "percent": out.used_basis_points // 100,
            },
        )
    return dict(counts)
