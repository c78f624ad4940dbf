"""What a source department may know of the products built on its resources: the ones that reached the
catalogue (listed, or delisted since), with the operator and the resources each derives from.

An operator's drafts and products in review stay the operator's own (DOMAIN.md, tenancy): they are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, Role
from market.accounts.service import Principal
from products.governance.models import DataResource, ProductResource
from products.models import Product


@dataclass
class DerivedProduct:
    """A product derived from the source's resources, with the codes of those resources."""

    slug: str
    title: str
    status: str
    operator: str
    zone: str
    resources: list[str] = field(default_factory=list)


def derived_products(session: Session, actor: Principal) -> list[DerivedProduct]:
    """The source department's resources' products that were ever listed, by slug."""
    actor.require(Role.SOURCE)
    rows = session.execute(
        select(Product, DataResource, Organisation.name)
        .join(ProductResource, ProductResource.product_id == Product.id)
        .join(DataResource, DataResource.id == ProductResource.resource_id)
        .join(Organisation, Organisation.id == Product.operator_org_id)
        .where(DataResource.source_org_id == actor.org_id, Product.listed_version_id.is_not(None))
        .order_by(Product.slug, DataResource.registration_code)
    ).all()
    found: dict[str, DerivedProduct] = {}
    for product, resource, operator in rows:
        entry = found.setdefault(
            product.id, DerivedProduct(product.slug, product.title, product.status, operator, product.zone)
        )
        entry.resources.append(resource.registration_code or resource.title)
    return list(found.values())
