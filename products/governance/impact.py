"""What suspending or revoking an authorisation would affect, shown to the regulator before it confirms.

`authorisations.change_status` delists every listed product of the operator that no other grant in force
covers; the agreements on those products stop being served. This module names them beforehand, with the
same coverage rule, so the confirmation page lists exactly what the change does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from metering import repository as metering_repo
from metering.models import Agreement, AgreementStatus
from products.governance import authorisations, repository
from products.governance.models import Authorisation
from products.models import Product, ProductStatus


@dataclass(frozen=True)
class AffectedAgreement:
    """An active agreement on an affected product: it stops being served."""

    id: str
    buyer: str
    purpose: str
    valid_until: datetime


@dataclass(frozen=True)
class AffectedProduct:
    """A listed product only this grant covers: it is delisted."""

    slug: str
    title: str
    zone: str
    region: str
    agreements: list[AffectedAgreement] = field(default_factory=list)


def _covered_elsewhere(others: list[Authorisation], product: Product) -> bool:
    return any(authorisations.covers(grant, product.zone, product.region, product.scenarios or ()) for grant in others)


def grant_impact(session: Session, actor: Principal, authorisation_id: str) -> list[AffectedProduct]:
    """The listed products that suspending or revoking the grant would delist, each with its active agreements."""
    actor.require(Role.REGULATOR)
    grant = authorisations.get_visible(session, actor, authorisation_id)
    now = utcnow()
    others = [
        a
        for a in repository.active_authorisations(session, grant.operator_org_id)
        if a.id != grant.id and authorisations.in_force(a, now)
    ]
    listed = session.scalars(
        select(Product)
        .where(Product.operator_org_id == grant.operator_org_id, Product.status == ProductStatus.LISTED.value)
        .order_by(Product.slug)
    ).all()
    affected = [p for p in listed if not _covered_elsewhere(others, p)]
    held = metering_repo.agreements_where(
        session,
        Agreement.product_id.in_([p.id for p in affected]),
        Agreement.status == AgreementStatus.ACTIVE.value,
    )
    buyers = metering_repo.org_names(session, [a.buyer_org_id for a in held])
    return [
        AffectedProduct(
            slug=p.slug,
            title=p.title,
            zone=p.zone,
            region=p.region,
            agreements=[
                AffectedAgreement(a.id, buyers.get(a.buyer_org_id, ""), a.purpose, a.valid_until)
                for a in held
                if a.product_id == p.id
            ],
        )
        for p in affected
    ]
