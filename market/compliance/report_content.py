"""What goes into each annual report: the regulator's disclosure, an operator's disclosure and an
operator's operating report, built from the database as plain JSON-ready dicts.

Figures come from the records themselves: revenue from the distributions of money received
(the same rows the ledger posts), queries and charges from the usage records, agreements from the
agreements table, flags from the audit log.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation
from market.compliance import allowed_revenue, fee_standards
from market.compliance.models import FeeStandard
from metering import privacy
from metering.models import Agreement, AuditFlag, ChargeType, Purpose, UsageRecord
from products.governance import repository as governance_repo
from products.governance.models import Authorisation, AuthorisationEvent
from products.models import Product, ProductEvent, ProductStatus
from sandbox import dp

PUBLIC = "public_interest"
PAID = "paid"


def _grants(session: Session, year: int, operator_org_id: str | None = None) -> list[Authorisation]:
    start, end = allowed_revenue.year_bounds(year)
    query = select(Authorisation).where(Authorisation.valid_from < end, Authorisation.valid_until > start)
    if operator_org_id is not None:
        query = query.where(Authorisation.operator_org_id == operator_org_id)
    return list(session.scalars(query.order_by(Authorisation.created_at, Authorisation.id)).all())


def _name(session: Session, org_id: str | None) -> str:
    org = session.get(Organisation, org_id) if org_id else None
    return org.name if org else ""


def authorisation_entries(session: Session, grants: list[Authorisation]) -> list[dict[str, Any]]:
    caps = governance_repo.fee_caps(session, [g.id for g in grants])
    return [
        {
            "id": g.id,
            "operator": _name(session, g.operator_org_id),
            "zones": list(g.zones),
            "regions": list(g.regions),
            "scenarios": list(g.scenarios),
            "valid_from": g.valid_from.isoformat(),
            "valid_until": g.valid_until.isoformat(),
            "status": g.status,
            "currency": g.currency,
            "fee_caps": [
                {
                    "zone": c.zone,
                    "max_per_query_minor": c.max_per_query_minor,
                    "max_per_gb_minor": str(c.max_per_gb_minor),
                    "max_monthly_fee_minor": c.max_monthly_fee_minor,
                    "max_per_tenth_epsilon_minor": c.max_per_tenth_epsilon_minor,
                }
                for c in caps[g.id]
            ],
        }
        for g in grants
    ]


def _products_in_year(session: Session, year: int, operator_org_id: str | None = None) -> list[Product]:
    """Products listed at some time up to the year's end (listed now, or a listing event on record)."""
    _, end = allowed_revenue.year_bounds(year)
    listed_ids = select(ProductEvent.product_id).where(
        ProductEvent.to_status == ProductStatus.LISTED.value, ProductEvent.at < end
    )
    query = select(Product).where(Product.id.in_(listed_ids))
    if operator_org_id is not None:
        query = query.where(Product.operator_org_id == operator_org_id)
    return list(session.scalars(query.order_by(Product.slug)).all())


def regulator_disclosure(session: Session, year: int) -> dict[str, Any]:
    """The authorising body's disclosure: its authorisations (scope, operator, validity) and fee caps,
    and the upper fee standards it set for products."""
    standards = []
    for product in _products_in_year(session, year):
        if session.get(FeeStandard, product.id) is not None:
            entry = fee_standards.describe(session, product)
            standards.append({"operator": _name(session, product.operator_org_id), **entry})
    return {
        "authorisations": authorisation_entries(session, _grants(session, year)),
        "fee_standards": standards,
    }


def operator_disclosure(session: Session, year: int, operator_org_id: str) -> dict[str, Any]:
    """An operator's disclosure: authorised resources, products and services, actual fees against caps."""
    products = _products_in_year(session, year, operator_org_id)
    lineage = governance_repo.lineage(session, [p.id for p in products])
    resources: dict[str, dict[str, Any]] = {}
    for product in products:
        for resource in lineage[product.id]:
            entry = resources.setdefault(
                resource.id,
                {
                    "title": resource.title,
                    "registration_code": resource.registration_code,
                    "source": _name(session, resource.source_org_id),
                    "zone": resource.zone,
                    "region": resource.region,
                    "classification": resource.classification,
                    "products": [],
                },
            )
            entry["products"].append(product.slug)
    return {
        "authorisations": authorisation_entries(session, _grants(session, year, operator_org_id)),
        "resources": list(resources.values()),
        "products": [{"status": p.status, "region": p.region, **fee_standards.describe(session, p)} for p in products],
    }


def _category(purpose: str) -> str:
    return PUBLIC if Purpose(purpose).is_public_interest else PAID


def operating_report(session: Session, year: int, operator_org_id: str) -> dict[str, Any]:
    """An operator's operating report: revenue per product against allowed revenue, queries and
    agreements by purpose (free public-interest against paid), buyers served, audit flags raised and resolved,
    and the privacy budget DP queries spent."""
    start, end = allowed_revenue.year_bounds(year)
    own = select(Product.id).where(Product.operator_org_id == operator_org_id)
    slugs = dict(
        session.execute(select(Product.id, Product.slug).where(Product.operator_org_id == operator_org_id)).all()
    )
    received = allowed_revenue.received_by_product(session, operator_org_id, year)
    figures = allowed_revenue.figures_row(session, operator_org_id, year)
    revenue: dict[str, Any] = {"received_minor": sum(received.values()), "allowed": None}
    if figures is not None:
        out = allowed_revenue.present(session, figures)
        revenue["allowed"] = {
            "currency": out.currency,
            "permitted_costs_minor": out.permitted_costs_minor,
            "profit_minor": out.profit_minor,
            "taxes_minor": out.taxes_minor,
            "carried_deduction_minor": out.carried_deduction_minor,
            "allowed_minor": out.allowed_minor,
            "headroom_minor": out.headroom_minor,
            "used_basis_points": out.used_basis_points,
            "excess_minor": max(out.received_minor - out.allowed_minor, 0),
        }
    usage = session.execute(
        select(UsageRecord.purpose, func.count(UsageRecord.id), func.coalesce(func.sum(UsageRecord.amount_minor), 0))
        .where(
            UsageRecord.product_id.in_(own),
            UsageRecord.charge_type != ChargeType.REJECTED.value,
            UsageRecord.created_at >= start,
            UsageRecord.created_at < end,
        )
        .group_by(UsageRecord.purpose)
    ).all()
    agreements = session.execute(
        select(Agreement.purpose, func.count(Agreement.id))
        .where(Agreement.product_id.in_(own), Agreement.created_at >= start, Agreement.created_at < end)
        .group_by(Agreement.purpose)
    ).all()
    by_category: dict[str, dict[str, int]] = {
        c: {"queries": 0, "charged_minor": 0, "agreements": 0} for c in (PUBLIC, PAID)
    }
    for purpose, count, charged in usage:
        by_category[_category(purpose)]["queries"] += int(count)
        by_category[_category(purpose)]["charged_minor"] += int(charged)
    for purpose, count in agreements:
        by_category[_category(purpose)]["agreements"] += int(count)
    buyers = session.scalar(
        select(func.count(func.distinct(UsageRecord.buyer_org_id))).where(
            UsageRecord.product_id.in_(own),
            UsageRecord.charge_type != ChargeType.REJECTED.value,
            UsageRecord.created_at >= start,
            UsageRecord.created_at < end,
        )
    )
    flagged = (
        select(func.count(AuditFlag.id))
        .join(UsageRecord, UsageRecord.id == AuditFlag.usage_record_id)
        .where(UsageRecord.product_id.in_(own))
    )
    raised = session.scalar(flagged.where(AuditFlag.created_at >= start, AuditFlag.created_at < end))
    resolved = session.scalar(flagged.where(AuditFlag.resolved_at >= start, AuditFlag.resolved_at < end))
    per_product: dict[str, int] = defaultdict(int)
    for product_id, amount in received.items():
        per_product[slugs.get(product_id, product_id)] += amount
    return {
        "revenue": revenue,
        "revenue_by_product": [
            {"product": slug, "received_minor": amount} for slug, amount in sorted(per_product.items())
        ],
        "usage_by_category": by_category,
        "buyers_served": int(buyers or 0),
        "audit_flags": {"raised": int(raised or 0), "resolved": int(resolved or 0)},
        "authorisation_events": int(
            session.scalar(
                select(func.count(AuthorisationEvent.id))
                .join(Authorisation, Authorisation.id == AuthorisationEvent.authorisation_id)
                .where(
                    Authorisation.operator_org_id == operator_org_id,
                    AuthorisationEvent.at >= start,
                    AuthorisationEvent.at < end,
                )
            )
            or 0
        ),
        "privacy_budget_spent": privacy_budget_spent(session, own, slugs, start, end),
    }


def privacy_budget_spent(
    session: Session, own: Any, slugs: dict[str, str], start: Any, end: Any
) -> dict[str, list[dict[str, Any]]]:
    """DP mode: the privacy budget the year's queries spent, per product and per agreement, from the usage
    records (rho in nano-units, summed exactly; epsilon at each agreement's delta, which does not add up
    across agreements, so products show rho and their agreements' count)."""
    rows = session.execute(
        select(
            UsageRecord.product_id,
            UsageRecord.agreement_id,
            func.count(UsageRecord.id),
            func.sum(UsageRecord.privacy_rho_nano),
        )
        .where(
            UsageRecord.product_id.in_(own),
            UsageRecord.privacy_rho_nano > 0,
            UsageRecord.created_at >= start,
            UsageRecord.created_at < end,
        )
        .group_by(UsageRecord.product_id, UsageRecord.agreement_id)
        .order_by(UsageRecord.product_id, UsageRecord.agreement_id)
    ).all()
    agreements = {
        a.id: a for a in session.scalars(select(Agreement).where(Agreement.id.in_([r[1] for r in rows]))).all()
    }
    products: dict[str, dict[str, Any]] = {}
    per_agreement = []
    for product_id, agreement_id, count, rho_nano in rows:
        slug = slugs.get(product_id, product_id)
        budget = privacy.budget_statement(agreements[agreement_id].policy) if agreement_id in agreements else None
        delta = budget["delta"] if budget else None
        per_agreement.append(
            {
                "product": slug,
                "agreement": agreement_id,
                "queries": int(count),
                "rho_nano": int(rho_nano),
                "epsilon": None
                if delta is None
                else round(float(dp.epsilon_of(Decimal(int(rho_nano)) / dp.NANO, delta)), 6),
                "budget_epsilon": budget["epsilon"] if budget else None,
            }
        )
        entry = products.setdefault(slug, {"product": slug, "queries": 0, "rho_nano": 0, "agreements": 0})
        entry["queries"] += int(count)
        entry["rho_nano"] += int(rho_nano)
        entry["agreements"] += 1
    return {"by_product": list(products.values()), "by_agreement": per_agreement}
