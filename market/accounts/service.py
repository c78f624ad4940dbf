"""Accounts: create organisations and users, issue, check and revoke API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from market.accounts import admin, repository, uscc
from market.accounts.models import PROFILE_FIELDS, ROLES_BY_KIND, ApiKey, Organisation, OrgKind, Role, User
from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, Unauthenticated, Unprocessable

KEY_PREFIX = "mk_"
BANK_ACCOUNT = re.compile(r"[0-9](?:[0-9]|[ -](?=[0-9])){7,39}")
ORG_READERS = (Role.ADMIN, Role.REGULATOR, Role.FINANCE)
"""Roles that may read any organisation's profile (finance bills them); others read only their own."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user acting for an organisation, with one role."""

    user_id: str
    org_id: str
    org_name: str
    role: Role
    key_hash: str | None = None
    """The hash of the API key that authenticated the call (None for a console session or the CLI): work
    that outlives the request (a query waiting for a worker) checks the key again before it answers."""

    def require(self, *roles: Role) -> None:
        """Raise Forbidden unless the principal holds one of `roles`."""
        if self.role not in roles:
            raise Forbidden("forbidden_role", needed=" or ".join(r.value for r in roles), role=self.role.value)


def hash_key(key: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create_org(session: Session, actor: Principal | None, *, name: str, kind: OrgKind) -> Organisation:
    """Create an organisation (admin only; `actor=None` is the CLI acting as the platform)."""
    if actor is not None:
        actor.require(Role.ADMIN)
    if repository.org_by_name(session, name) is not None:
        raise Conflict("duplicate_organisation", name=name)
    org = Organisation(name=name, kind=kind.value)
    session.add(org)
    session.flush()
    _record(session, actor, "org_created", org.id, f"{name} ({kind.value})")
    return org


def create_user(
    session: Session, actor: Principal | None, *, org: Organisation, name: str, email: str, role: Role
) -> User:
    """Create a user in `org` with `role`, which must fit the organisation's kind."""
    if actor is not None:
        actor.require(Role.ADMIN)
    allowed = ROLES_BY_KIND[OrgKind(org.kind)]
    if role not in allowed:
        raise Unprocessable(
            "role_kind_mismatch",
            role=role.value,
            kind=org.kind,
            allowed=", ".join(sorted(r.value for r in allowed)),
        )
    if repository.user_by_email(session, email) is not None:
        raise Conflict("duplicate_user", email=email)
    user = User(org_id=org.id, name=name, email=email, role=role.value)
    session.add(user)
    session.flush()
    _record(session, actor, "user_created", user.id, f"{email} ({role.value}, {org.name})")
    return user


def issue_key(session: Session, actor: Principal | None, *, user: User, label: str = "") -> tuple[ApiKey, str]:
    """Issue a new API key for `user`. The clear key is returned once and never stored."""
    if actor is not None:
        actor.require(Role.ADMIN)
    clear = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=user.id, label=label, prefix=clear[:10], key_hash=hash_key(clear))
    session.add(key)
    session.flush()
    _record(session, actor, "key_issued", key.id, f"{key.prefix}… {user.email}")
    return key, clear


def list_keys(session: Session, actor: Principal) -> Sequence[ApiKey]:
    """The keys of the caller's own organisation (never the key itself, which is not stored)."""
    return repository.keys_of_org(session, actor.org_id)


def revoke_key(session: Session, actor: Principal, key_id: str) -> ApiKey:
    """Revoke a key: an admin may revoke any key, a user only keys of their own organisation."""
    key = session.get(ApiKey, key_id)
    owner = session.get(User, key.user_id) if key else None
    if key is None or owner is None or (actor.role != Role.ADMIN and owner.org_id != actor.org_id):
        raise NotFound("api_key_not_found", key=key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        if actor.role == Role.ADMIN:
            _record(session, actor, "key_revoked", key.id, f"{key.prefix}… {owner.email}")
    return key


def authenticate(session: Session, clear_key: str | None) -> Principal:
    """The principal behind a bearer key, or Unauthenticated."""
    if not clear_key:
        raise Unauthenticated("missing_credentials")
    found = repository.active_key_by_hash(session, hash_key(clear_key))
    if found is None:
        raise Unauthenticated("invalid_api_key")
    key, user, org = found
    if not hmac.compare_digest(key.key_hash, hash_key(clear_key)):
        raise Unauthenticated("invalid_api_key")
    return Principal(user_id=user.id, org_id=org.id, org_name=org.name, role=Role(user.role), key_hash=key.key_hash)


def key_refusal(session: Session, actor: Principal) -> Unauthenticated | None:
    """Unauthenticated if the API key behind `actor` was revoked (or its user deactivated) since it was
    authenticated; None for a principal without a key."""
    if actor.key_hash is None or repository.active_key_by_hash(session, actor.key_hash) is not None:
        return None
    return Unauthenticated("invalid_api_key")


def get_org(session: Session, org_id: str) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("organisation_not_found", org=org_id)
    return org


def list_orgs(session: Session, actor: Principal) -> Sequence[Organisation]:
    """All organisations (admin and regulator), otherwise only the caller's own."""
    if actor.role in (Role.ADMIN, Role.REGULATOR):
        return repository.list_orgs(session)
    return [get_org(session, actor.org_id)]


def visible_org(session: Session, actor: Principal, org_id: str) -> Organisation:
    """An organisation with its profile: admin, regulator and finance see any, others only their own (else 404)."""
    if actor.role not in ORG_READERS and org_id != actor.org_id:
        raise NotFound("organisation_not_found", org=org_id)
    return get_org(session, org_id)


def normalized_uscc(code: str) -> str:
    """`code` without spaces, in capitals; Unprocessable unless it is a valid unified social credit code."""
    code = "".join(code.split()).upper()
    found = uscc.problem(code)
    if found is not None:
        reason, params = found
        raise Unprocessable(reason, **params)
    return code


def normalized_bank_account(account: str) -> str:
    """`account` trimmed; Unprocessable unless it is 8 to 40 digits, grouped with single spaces or hyphens."""
    account = account.strip()
    digits = sum(char.isdigit() for char in account)
    if not BANK_ACCOUNT.fullmatch(account) or not 8 <= digits <= 40:
        raise Unprocessable("invalid_bank_account", account=account)
    return account


def update_org(session: Session, actor: Principal, org_id: str, changes: dict[str, str | None]) -> Organisation:
    """Change an organisation's name or profile (admin only). A None value clears a profile field."""
    actor.require(Role.ADMIN)
    org = get_org(session, org_id)
    if "name" in changes:
        name = changes.pop("name")
        if name is not None and name != org.name:
            if repository.org_by_name(session, name) is not None:
                raise Conflict("duplicate_organisation", name=name)
            org.name = name
    for field, value in changes.items():
        if field not in PROFILE_FIELDS:
            continue
        if value is not None and field == "uscc":
            value = normalized_uscc(value)
        elif value is not None and field == "bank_account":
            value = normalized_bank_account(value)
        elif value is not None:
            value = value.strip() or None
        setattr(org, field, value)
    session.flush()
    _record(session, actor, "org_updated", org.id, ", ".join(sorted(changes)) or "name")
    return org


def _record(session: Session, actor: Principal | None, action: str, subject: str, detail: str) -> None:
    admin.record(session, actor, action, subject, detail)
