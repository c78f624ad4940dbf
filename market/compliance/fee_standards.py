"""Per-product upper fee standards (上限收费标准): the regulator sets one at review, inside the
zone's fee cap; every plan of the product is then checked against the stricter of the two."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.compliance.models import FeeStandard
from market.compliance.schemas import FeeStandardIn, FeeStandardOut
from market.errors import Conflict, Unprocessable
from products import repository as products_repo
from products import service as products
from products.governance import authorisations
from products.models import PricePlan, Product, ProductStatus

SETTABLE = {ProductStatus.SUBMITTED.value, ProductStatus.LISTED.value}


def _zone_cap(session: Session, product: Product) -> dict[str, Decimal]:
    grant = authorisations.require_scope(
        session, product.operator_org_id, product.zone, product.region, product.scenarios or ()
    )
    return authorisations.cap_limits(authorisations.cap_for(session, grant, product.zone))


def _active_plans(session: Session, product: Product) -> list[PricePlan]:
    return products_repo.plans_of(session, [product.id])[product.id]


def set_standard(session: Session, actor: Principal, slug: str, data: FeeStandardIn) -> FeeStandard:
    """The regulator sets a submitted or listed product's upper fee standard, at or under the zone's cap;
    the product's current plans must already fit under it."""
    actor.require(Role.REGULATOR)
    product = products.visible_product(session, actor, slug)
    if product.status not in SETTABLE:
        raise Conflict("fee_standard_not_in_review", status=product.status)
    cap = _zone_cap(session, product)
    wanted = {
        "per_query_minor": Decimal(data.max_per_query_minor),
        "per_gb_minor": Decimal(data.max_per_gb_minor),
        "monthly_fee_minor": Decimal(data.max_monthly_fee_minor),
    }
    if data.max_per_tenth_epsilon_minor is not None:
        wanted["per_tenth_epsilon_minor"] = Decimal(data.max_per_tenth_epsilon_minor)
    for field, amount in wanted.items():
        if amount > cap[field]:
            raise Unprocessable("fee_standard_above_cap", field=field, amount=amount, cap=cap[field], zone=product.zone)
    held = {**cap, **wanted}  # a standard without a privacy fee leaves the zone's cap to limit it
    for plan in _active_plans(session, product):
        excess = authorisations.over_cap(plan, held)
        if excess is not None:
            raise Unprocessable(
                "plan_above_fee_standard", plan=plan.code, field=excess[0], amount=excess[1], standard=excess[2]
            )
    standard = session.get(FeeStandard, product.id)
    if standard is None:
        standard = FeeStandard(product_id=product.id, set_by=actor.user_id, **data.model_dump())
        session.add(standard)
    else:
        for name, value in data.model_dump().items():
            setattr(standard, name, value)
    standard.set_by = actor.user_id
    standard.set_at = utcnow()
    session.flush()
    return standard


def fee_view(session: Session, actor: Principal, slug: str) -> dict[str, Any]:
    """The zone's cap, the product's fee standard (if any) and its plans' actual prices, side by side."""
    product = products.visible_product(session, actor, slug)
    return describe(session, product)


def describe(session: Session, product: Product) -> dict[str, Any]:
    """Cap, standard and actual prices of one product (also used by the disclosures)."""
    return {
        "product": product.slug,
        "title": product.title,
        "zone": product.zone,
        **authorisations.fee_limits_view(session, product),
        "plans": [
            {
                "code": plan.code,
                "kind": plan.kind,
                "currency": plan.currency,
                "per_query_minor": plan.per_query_minor,
                "per_gb_minor": str(plan.per_gb_minor),
                "monthly_fee_minor": plan.monthly_fee_minor,
                **({"per_tenth_epsilon_minor": plan.per_tenth_epsilon_minor} if plan.per_tenth_epsilon_minor else {}),
                "tiers": plan.tiers or [],
            }
            for plan in _active_plans(session, product)
        ],
    }


def present(session: Session, product: Product, standard: FeeStandard) -> FeeStandardOut:
    cap = _zone_cap(session, product)
    return FeeStandardOut(
        product=product.slug,
        max_per_query_minor=standard.max_per_query_minor,
        max_per_gb_minor=standard.max_per_gb_minor,
        max_monthly_fee_minor=standard.max_monthly_fee_minor,
        max_per_tenth_epsilon_minor=standard.max_per_tenth_epsilon_minor,
        zone_cap={k: str(v) for k, v in cap.items()},
        set_at=standard.set_at,
    )
