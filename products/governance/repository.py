"""All SQL for authorisations, fee caps, data resources and lineage."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from products.governance.models import (
    Authorisation,
    AuthorisationEvent,
    AuthorisationStatus,
    DataResource,
    FeeCap,
    ProductResource,
    ResourceStatus,
)


def authorisations(session: Session, operator_org_id: str | None = None) -> Sequence[Authorisation]:
    statement = select(Authorisation).order_by(Authorisation.created_at, Authorisation.id)
    if operator_org_id is not None:
        statement = statement.where(Authorisation.operator_org_id == operator_org_id)
    return session.scalars(statement).all()


def active_authorisations(session: Session, operator_org_id: str) -> Sequence[Authorisation]:
    return session.scalars(
        select(Authorisation)
        .where(
            Authorisation.operator_org_id == operator_org_id,
            Authorisation.status == AuthorisationStatus.ACTIVE.value,
        )
        .order_by(Authorisation.created_at, Authorisation.id)
    ).all()


def fee_caps(session: Session, authorisation_ids: Sequence[str]) -> dict[str, list[FeeCap]]:
    caps: dict[str, list[FeeCap]] = {a: [] for a in authorisation_ids}
    if authorisation_ids:
        for cap in session.scalars(
            select(FeeCap).where(FeeCap.authorisation_id.in_(authorisation_ids)).order_by(FeeCap.zone)
        ):
            caps[cap.authorisation_id].append(cap)
    return caps


def events_of(session: Session, authorisation_id: str) -> Sequence[AuthorisationEvent]:
    return session.scalars(
        select(AuthorisationEvent)
        .where(AuthorisationEvent.authorisation_id == authorisation_id)
        .order_by(AuthorisationEvent.at, AuthorisationEvent.id)
    ).all()


def resources(
    session: Session, *, source_org_id: str | None = None, status: ResourceStatus | None = None
) -> Sequence[DataResource]:
    statement = select(DataResource).order_by(DataResource.created_at, DataResource.id)
    if source_org_id is not None:
        statement = statement.where(DataResource.source_org_id == source_org_id)
    if status is not None:
        statement = statement.where(DataResource.status == status.value)
    return session.scalars(statement).all()


def resource_by_code(session: Session, code: str) -> DataResource | None:
    return session.scalars(select(DataResource).where(DataResource.registration_code == code)).one_or_none()


def lineage(session: Session, product_ids: Sequence[str]) -> dict[str, list[DataResource]]:
    out: dict[str, list[DataResource]] = {p: [] for p in product_ids}
    if product_ids:
        rows = session.execute(
            select(ProductResource.product_id, DataResource)
            .join(DataResource, DataResource.id == ProductResource.resource_id)
            .where(ProductResource.product_id.in_(product_ids))
            .order_by(DataResource.registration_code)
        )
        for product_id, resource in rows:
            out[product_id].append(resource)
    return out
