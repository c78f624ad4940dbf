"""HTTP routes for the regulator's authorisations and for data resources."""

from __future__ import annotations

from fastapi import APIRouter

from market.deps import PrincipalDep, SessionDep
from market.pagination import CursorQuery, LimitQuery, Page, page_of
from products.governance import authorisations as service
from products.governance import repository, resources
from products.governance.schemas import (
    AuthorisationEventOut,
    AuthorisationIn,
    AuthorisationOut,
    ResourceIn,
    ResourceOut,
    ResourceReviewIn,
    StatusChangeIn,
)

router = APIRouter(prefix="/v1/authorisations", tags=["authorisations"])


@router.get("", response_model=Page[AuthorisationOut])
def list_authorisations(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[AuthorisationOut]:
    """The regulator sees every grant; an operator its own; oldest first."""
    found = service.visible(session, principal)
    page, next_cursor = page_of(found, key=lambda a: (a.created_at, a.id), limit=limit, cursor=cursor)
    return Page(items=service.present(session, page), next_cursor=next_cursor)


@router.post("", response_model=AuthorisationOut, status_code=201)
def grant_authorisation(body: AuthorisationIn, session: SessionDep, principal: PrincipalDep) -> AuthorisationOut:
    """The regulator grants an operator a scope (zones, regions, scenarios), a period and fee caps per zone."""
    return service.present(session, [service.grant(session, principal, body)])[0]


@router.get("/{authorisation_id}", response_model=AuthorisationOut)
def get_authorisation(authorisation_id: str, session: SessionDep, principal: PrincipalDep) -> AuthorisationOut:
    """One authorisation: scope, validity, fee caps and status."""
    return service.present(session, [service.get_visible(session, principal, authorisation_id)])[0]


@router.get("/{authorisation_id}/events", response_model=Page[AuthorisationEventOut])
def authorisation_events(
    authorisation_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[AuthorisationEventOut]:
    """The authorisation's history, oldest first: grant, suspensions, reinstatements and revocation."""
    grant = service.get_visible(session, principal, authorisation_id)
    found = repository.events_of(session, grant.id)
    page, next_cursor = page_of(found, key=lambda e: (e.at, e.id), limit=limit, cursor=cursor)
    return Page(items=[AuthorisationEventOut.model_validate(e) for e in page], next_cursor=next_cursor)


def _change(
    action: str, authorisation_id: str, body: StatusChangeIn, session: SessionDep, principal: PrincipalDep
) -> AuthorisationOut:
    changed = service.change_status(session, principal, authorisation_id, action, body.reason)
    return service.present(session, [changed])[0]


@router.post("/{authorisation_id}/suspend", response_model=AuthorisationOut)
def suspend(
    authorisation_id: str, body: StatusChangeIn, session: SessionDep, principal: PrincipalDep
) -> AuthorisationOut:
    """Suspend a grant: its products are delisted and their agreements stop being served."""
    return _change("suspend", authorisation_id, body, session, principal)


@router.post("/{authorisation_id}/reinstate", response_model=AuthorisationOut)
def reinstate(
    authorisation_id: str, body: StatusChangeIn, session: SessionDep, principal: PrincipalDep
) -> AuthorisationOut:
    """Lift a suspension. Delisted products must be submitted for review again."""
    return _change("reinstate", authorisation_id, body, session, principal)


@router.post("/{authorisation_id}/revoke", response_model=AuthorisationOut)
def revoke(
    authorisation_id: str, body: StatusChangeIn, session: SessionDep, principal: PrincipalDep
) -> AuthorisationOut:
    """Revoke a grant for good: its products are delisted and their agreements stop being served."""
    return _change("revoke", authorisation_id, body, session, principal)


resources_router = APIRouter(prefix="/v1/resources", tags=["resources"])


@resources_router.get("", response_model=Page[ResourceOut])
def list_resources(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[ResourceOut]:
    """Sources see their own resources; the regulator all; operators the registered ones; oldest first."""
    found = resources.visible(session, principal)
    page, next_cursor = page_of(found, key=lambda r: (r.created_at, r.id), limit=limit, cursor=cursor)
    return Page(items=resources.present(session, page), next_cursor=next_cursor)


@resources_router.post("", response_model=ResourceOut, status_code=201)
def register_resource(body: ResourceIn, session: SessionDep, principal: PrincipalDep) -> ResourceOut:
    """A source department submits a resource (catalogue metadata, classification) for registration."""
    return resources.present(session, [resources.register(session, principal, body)])[0]


@resources_router.get("/{resource_id}", response_model=ResourceOut)
def get_resource(resource_id: str, session: SessionDep, principal: PrincipalDep) -> ResourceOut:
    """One data resource with its catalogue entry and review state."""
    return resources.present(session, [resources.get_visible(session, principal, resource_id)])[0]


@resources_router.put("/{resource_id}", response_model=ResourceOut)
def revise_resource(resource_id: str, body: ResourceIn, session: SessionDep, principal: PrincipalDep) -> ResourceOut:
    """The source revises a returned resource; it goes back to the regulator as pending."""
    return resources.present(session, [resources.revise(session, principal, resource_id, body)])[0]


@resources_router.post("/{resource_id}/review", response_model=ResourceOut)
def review_resource(
    resource_id: str, body: ResourceReviewIn, session: SessionDep, principal: PrincipalDep
) -> ResourceOut:
    """The regulator registers the resource (with a registration code) or returns it with comments."""
    reviewed = resources.review(session, principal, resource_id, body.decision, body.comment, body.registration_code)
    return resources.present(session, [reviewed])[0]
