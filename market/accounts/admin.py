"""The admin's work on people: list users, change a user's role, deactivate and reactivate, list API keys
by prefix, and the activity log every admin action writes (`record`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from market.accounts.models import ROLES_BY_KIND, AdminActivity, ApiKey, Organisation, OrgKind, Role, User, WebSession
from market.clock import utcnow
from market.errors import Conflict, NotFound, Unprocessable

if TYPE_CHECKING:
    from market.accounts.service import Principal

ACTIONS = (
    "org_created",
    "org_updated",
    "user_created",
    "user_role_changed",
    "user_deactivated",
    "user_reactivated",
    "password_set",
    "key_issued",
    "key_revoked",
)
"""Every code the activity log uses."""


def record(session: Session, actor: Principal | None, action: str, subject: str, detail: str = "") -> None:
    """Write one line of the admin activity log (nothing for the CLI or the demo, which act as the platform)."""
    if actor is None:
        return
    assert action in ACTIONS, action
    session.add(
        AdminActivity(
            actor_user_id=actor.user_id, action=action, subject=subject, detail=detail[:500], created_at=utcnow()
        )
    )


def activity(session: Session, actor: Principal, limit: int = 200) -> Sequence[AdminActivity]:
    """The admin activity log, newest first (admin only)."""
    actor.require(Role.ADMIN)
    return session.scalars(
        select(AdminActivity).order_by(AdminActivity.created_at.desc(), AdminActivity.id.desc()).limit(limit)
    ).all()


def users(session: Session, actor: Principal, org_id: str | None = None) -> Sequence[User]:
    """Every user, by e-mail, optionally of one organisation (admin only)."""
    actor.require(Role.ADMIN)
    query = select(User).order_by(User.email)
    if org_id:
        query = query.where(User.org_id == org_id)
    return session.scalars(query).all()


def user(session: Session, actor: Principal, user_id: str) -> User:
    actor.require(Role.ADMIN)
    found = session.get(User, user_id)
    if found is None:
        raise NotFound("user_not_found", user=user_id)
    return found


def change_role(session: Session, actor: Principal, user_id: str, role: Role) -> User:
    """Give a user another role, one its organisation's kind allows (admin only; not one's own role)."""
    found = user(session, actor, user_id)
    if found.id == actor.user_id:
        raise Conflict("cannot_change_own_account")
    org = session.get(Organisation, found.org_id)
    assert org is not None
    allowed = ROLES_BY_KIND[OrgKind(org.kind)]
    if role not in allowed:
        raise Unprocessable(
            "role_kind_mismatch", role=role.value, kind=org.kind, allowed=", ".join(sorted(r.value for r in allowed))
        )
    if found.role != role.value:
        record(session, actor, "user_role_changed", found.id, f"{found.role} -> {role.value}")
        found.role = role.value
        _end_sessions(session, found.id)
    return found


def set_active(session: Session, actor: Principal, user_id: str, active: bool) -> User:
    """Deactivate a user (no sign-in, no API key, open sessions end) or reactivate one (admin only)."""
    found = user(session, actor, user_id)
    if found.id == actor.user_id:
        raise Conflict("cannot_change_own_account")
    if active and found.deactivated_at is not None:
        found.deactivated_at = None
        record(session, actor, "user_reactivated", found.id, found.email)
    elif not active and found.deactivated_at is None:
        found.deactivated_at = utcnow()
        _end_sessions(session, found.id)
        record(session, actor, "user_deactivated", found.id, found.email)
    return found


def _end_sessions(session: Session, user_id: str) -> None:
    session.execute(
        update(WebSession).where(WebSession.user_id == user_id, WebSession.ended_at.is_(None)).values(ended_at=utcnow())
    )


def keys(session: Session, actor: Principal, prefix: str = "", user_id: str | None = None) -> Sequence[ApiKey]:
    """Every API key (never the key itself), optionally those starting with `prefix` or of one user (admin only)."""
    actor.require(Role.ADMIN)
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if prefix.strip():
        query = query.where(ApiKey.prefix.startswith(prefix.strip()[:16], autoescape=True))
    if user_id:
        query = query.where(ApiKey.user_id == user_id)
    return session.scalars(query.limit(500)).all()
