"""Data resources (公共数据资源): registered by source departments, reviewed by the regulator, used as lineage."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, NotFound, Unprocessable
from products.governance import repository
from products.governance.models import Classification, DataResource, ProductResource, ResourceStatus
from products.governance.schemas import ResourceIn, ResourceOut
from products.models import Product


def present(session: Session, found: Sequence[DataResource]) -> list[ResourceOut]:
    """Resources as the API shows them, with the source department's name beside its id."""
    names = {
        org.id: org.name
        for org in session.scalars(select(Organisation).where(Organisation.id.in_({r.source_org_id for r in found})))
    }
    return [ResourceOut.model_validate(r).model_copy(update={"source": names.get(r.source_org_id, "")}) for r in found]


def register(session: Session, actor: Principal, data: ResourceIn) -> DataResource:
    """A source department submits a resource it holds for registration."""
    actor.require(Role.SOURCE)
    resource = DataResource(
        source_org_id=actor.org_id,
        title=data.title,
        description=data.description,
        zone=data.zone,
        region=data.region,
        classification=data.classification.value,
        catalogue=data.catalogue,
        submitted_by=actor.user_id,
    )
    session.add(resource)
    session.flush()
    return resource


def visible(session: Session, actor: Principal) -> Sequence[DataResource]:
    """Sources see their own; the regulator and admin all; operators the registered ones they may build on."""
    if actor.role == Role.SOURCE:
        return repository.resources(session, source_org_id=actor.org_id)
    if actor.role in (Role.REGULATOR, Role.ADMIN):
        return repository.resources(session)
    actor.require(Role.OPERATOR, Role.SOURCE, Role.REGULATOR)
    return repository.resources(session, status=ResourceStatus.REGISTERED)


def get_visible(session: Session, actor: Principal, resource_id: str) -> DataResource:
    resource = session.get(DataResource, resource_id)
    if resource is None or resource not in visible(session, actor):
        raise NotFound("resource_not_found", resource=resource_id)
    return resource


def revise(session: Session, actor: Principal, resource_id: str, data: ResourceIn) -> DataResource:
    """The source revises a returned resource, which goes back to the regulator."""
    actor.require(Role.SOURCE)
    resource = get_visible(session, actor, resource_id)
    if resource.status != ResourceStatus.RETURNED:
        raise Conflict("resource_not_returned", status=resource.status)
    resource.title = data.title
    resource.description = data.description
    resource.zone = data.zone
    resource.region = data.region
    resource.classification = data.classification.value
    resource.catalogue = data.catalogue
    resource.status = ResourceStatus.PENDING.value
    resource.updated_at = utcnow()
    session.flush()
    return resource


def review(
    session: Session, actor: Principal, resource_id: str, decision: str, comment: str, code: str | None
) -> DataResource:
    """The regulator registers a pending resource under a registration code, or returns it with comments."""
    actor.require(Role.REGULATOR)
    resource = get_visible(session, actor, resource_id)
    if resource.status != ResourceStatus.PENDING:
        raise Conflict("resource_not_pending", status=resource.status)
    now = utcnow()
    if decision == "register":
        code = code or f"{resource.region}-{resource.zone.upper()}-{now:%Y}-{secrets.token_hex(3).upper()}"
        if repository.resource_by_code(session, code) is not None:
            raise Conflict("duplicate_registration_code", registration_code=code)
        resource.registration_code = code
        resource.status = ResourceStatus.REGISTERED.value
    else:
        resource.status = ResourceStatus.RETURNED.value
    resource.review_comment = comment
    resource.reviewed_by = actor.user_id
    resource.reviewed_at = now
    resource.updated_at = now
    session.flush()
    return resource


def link(session: Session, product: Product, references: Sequence[str]) -> None:
    """Record that `product` derives from the registered resources named by id or registration code."""
    existing = {r.id for r in repository.lineage(session, [product.id])[product.id]}
    for reference in dict.fromkeys(references):
        resource = session.get(DataResource, reference) or repository.resource_by_code(session, reference)
        if resource is None:
            raise Unprocessable("resource_not_found", resource=reference)
        if resource.status != ResourceStatus.REGISTERED:
            raise Unprocessable("resource_not_registered", resource=reference)
        if resource.classification == Classification.CORE:
            raise Unprocessable("resource_core", resource=reference)
        if resource.zone != product.zone:
            raise Unprocessable(
                "resource_outside_zone", resource=reference, zone=resource.zone, product_zone=product.zone
            )
        if resource.id not in existing:
            session.add(ProductResource(product_id=product.id, resource_id=resource.id))
            existing.add(resource.id)
    session.flush()
