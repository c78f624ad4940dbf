"""HTTP routes for accounts: who am I, organisations, users and API keys."""

from __future__ import annotations

from fastapi import APIRouter

from market.accounts import service
from market.accounts.models import Role, User
from market.accounts.schemas import IssuedKeyOut, KeyIn, KeyOut, OrgIn, OrgOut, UserIn, UserOut, WhoAmI
from market.deps import PrincipalDep, SessionDep
from market.errors import NotFound
from market.pagination import CursorQuery, LimitQuery, Page, page_of

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.get("/me", response_model=WhoAmI)
def whoami(principal: PrincipalDep) -> WhoAmI:
    """The caller behind the API key: user, organisation and role."""
    return WhoAmI(
        user_id=principal.user_id,
        org_id=principal.org_id,
        org_name=principal.org_name,
        role=principal.role.value,
    )


@router.get("/orgs", response_model=Page[OrgOut])
def list_orgs(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[OrgOut]:
    """Every organisation, by name (admin only)."""
    found = service.list_orgs(session, principal)
    page, next_cursor = page_of(found, key=lambda o: (o.name, o.id), limit=limit, cursor=cursor)
    return Page(items=[OrgOut.model_validate(o) for o in page], next_cursor=next_cursor)


@router.post("/orgs", response_model=OrgOut, status_code=201)
def create_org(body: OrgIn, session: SessionDep, principal: PrincipalDep) -> OrgOut:
    """Register an organisation of a given kind (admin only)."""
    return OrgOut.model_validate(service.create_org(session, principal, name=body.name, kind=body.kind))


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, session: SessionDep, principal: PrincipalDep) -> UserOut:
    """Add a user with one role to an organisation whose kind allows that role (admin only)."""
    principal.require(Role.ADMIN)
    org = service.get_org(session, body.org_id)
    user = service.create_user(session, principal, org=org, name=body.name, email=body.email, role=body.role)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/keys", response_model=IssuedKeyOut, status_code=201)
def issue_key(user_id: str, body: KeyIn, session: SessionDep, principal: PrincipalDep) -> IssuedKeyOut:
    """Issue an API key for a user; the key is shown once, in this response only."""
    principal.require(Role.ADMIN)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user_not_found", user=user_id)
    key, clear = service.issue_key(session, principal, user=user, label=body.label)
    return IssuedKeyOut(**KeyOut.model_validate(key).model_dump(), key=clear)


@router.get("/keys", response_model=Page[KeyOut])
def list_keys(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[KeyOut]:
    """The API keys of the caller's organisation, without their secrets, oldest first."""
    found = service.list_keys(session, principal)
    page, next_cursor = page_of(found, key=lambda k: (k.created_at, k.id), limit=limit, cursor=cursor)
    return Page(items=[KeyOut.model_validate(k) for k in page], next_cursor=next_cursor)


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: str, session: SessionDep, principal: PrincipalDep) -> KeyOut:
    """Revoke an API key of the caller's organisation; it stops working at once."""
    return KeyOut.model_validate(service.revoke_key(session, principal, key_id))
