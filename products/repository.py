"""All SQL for products, versions, plans and events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from products.models import PricePlan, Product, ProductEvent, ProductStatus, ProductVersion


def by_slug(session: Session, slug: str) -> Product | None:
    return session.scalars(select(Product).where(Product.slug == slug)).one_or_none()


def listed(session: Session) -> Sequence[Product]:
    return session.scalars(
        select(Product).where(Product.status == ProductStatus.LISTED.value).order_by(Product.slug)
    ).all()


def of_operator(session: Session, org_id: str) -> Sequence[Product]:
    return session.scalars(select(Product).where(Product.operator_org_id == org_id).order_by(Product.slug)).all()


def all_products(session: Session) -> Sequence[Product]:
    return session.scalars(select(Product).order_by(Product.slug)).all()


def plans_of(session: Session, product_ids: Sequence[str]) -> dict[str, list[PricePlan]]:
    plans: dict[str, list[PricePlan]] = {pid: [] for pid in product_ids}
    if product_ids:
        rows = session.scalars(
            select(PricePlan).where(PricePlan.product_id.in_(product_ids), PricePlan.active).order_by(PricePlan.code)
        )
        for plan in rows:
            plans[plan.product_id].append(plan)
    return plans


def versions_by_id(session: Session, version_ids: Sequence[str]) -> dict[str, ProductVersion]:
    if not version_ids:
        return {}
    return {v.id: v for v in session.scalars(select(ProductVersion).where(ProductVersion.id.in_(version_ids)))}


def next_version_number(session: Session, product_id: str) -> int:
    current = session.scalar(select(func.max(ProductVersion.number)).where(ProductVersion.product_id == product_id))
    return int(current or 0) + 1


def plan_by_code(session: Session, product_id: str, code: str) -> PricePlan | None:
    return session.scalars(
        select(PricePlan).where(PricePlan.product_id == product_id, PricePlan.code == code)
    ).one_or_none()


def events_of(session: Session, product_id: str) -> Sequence[ProductEvent]:
    return session.scalars(
        select(ProductEvent).where(ProductEvent.product_id == product_id).order_by(ProductEvent.at)
    ).all()


def version_by_number(session: Session, product_id: str, number: int) -> ProductVersion | None:
    return session.scalars(
        select(ProductVersion).where(ProductVersion.product_id == product_id, ProductVersion.number == number)
    ).one_or_none()


def versions_of(session: Session, product_id: str) -> Sequence[ProductVersion]:
    return session.scalars(
        select(ProductVersion).where(ProductVersion.product_id == product_id).order_by(ProductVersion.number)
    ).all()


def lock_product(session: Session, product_id: str) -> None:
    """Hold the product's row until the transaction ends (PostgreSQL; SQLite serialises writers itself)."""
    session.execute(select(Product.id).where(Product.id == product_id).with_for_update())
