"""Raising notifications (in-app, one per user and event) and reading them.

`notify` inserts with insert-or-ignore on (user, dedupe key): the same event raised twice, by a
retried job or by two replicas, notifies each user once. E-mail delivery is `delivery.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from market.accounts.models import Role, User
from market.accounts.service import Principal
from market.clock import new_id, utcnow
from market.db import insert_ignore
from market.errors import NotFound
from market.messages import render
from market.notifications.models import EmailStatus, Notification


def users_of_orgs(session: Session, org_ids: Iterable[str]) -> list[User]:
    """Every user of the given organisations."""
    wanted = sorted(set(org_ids))
    if not wanted:
        return []
    return list(session.scalars(select(User).where(User.org_id.in_(wanted)).order_by(User.id)).all())


def users_with_roles(session: Session, *roles: Role) -> list[User]:
    """Every user holding one of `roles` (e.g. all finance clerks, all regulators)."""
    return list(session.scalars(select(User).where(User.role.in_([r.value for r in roles])).order_by(User.id)).all())


def notify(session: Session, users: Iterable[User], kind: str, dedupe_key: str, data: dict[str, Any]) -> int:
    """Notify each of `users` once about an event; returns how many rows the call inserted.

    The subject and body are the messages `<kind>_subject` and `<kind>_body`, filled from `data`."""
    inserted = 0
    subject = render(f"{kind}_subject", **data)
    body = render(f"{kind}_body", **data)
    now = utcnow()
    seen: set[str] = set()
    for user in users:
        if user.id in seen:
            continue
        seen.add(user.id)
        before = session.scalar(
            select(Notification.id).where(Notification.user_id == user.id, Notification.dedupe_key == dedupe_key)
        )
        if before is not None:
            continue
        insert_ignore(
            session,
            Notification.__table__,
            {
                "id": new_id("ntf"),
                "user_id": user.id,
                "org_id": user.org_id,
                "kind": kind,
                "dedupe_key": dedupe_key,
                "subject": subject,
                "body": body,
                "data": {k: v if isinstance(v, int | str | bool) or v is None else str(v) for k, v in data.items()},
                "created_at": now,
                "email_to": user.email or "",
                "email_status": (EmailStatus.PENDING if user.email else EmailStatus.NONE).value,
                "email_attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
            },
            ["user_id", "dedupe_key"],
        )
        inserted += 1
    session.flush()
    return inserted


def mine(session: Session, actor: Principal, *, unread_only: bool = False) -> Sequence[Notification]:
    """The caller's own notifications, newest first."""
    query = select(Notification).where(Notification.user_id == actor.user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return session.scalars(query.order_by(Notification.created_at.desc(), Notification.id)).all()


def unread_count(session: Session, actor: Principal) -> int:
    """How many of the caller's notifications are unread."""
    rows = session.scalars(
        select(Notification.id).where(Notification.user_id == actor.user_id, Notification.read_at.is_(None))
    ).all()
    return len(rows)


def mark_read(session: Session, actor: Principal, notification_id: str) -> Notification:
    """Mark one of the caller's notifications read (another user's answers 404)."""
    found = session.get(Notification, notification_id)
    if found is None or found.user_id != actor.user_id:
        raise NotFound("notification_not_found", notification=notification_id)
    if found.read_at is None:
        found.read_at = utcnow()
        session.flush()
    return found


def mark_all_read(session: Session, actor: Principal) -> int:
    """Mark every unread notification of the caller read; returns how many changed."""
    result = session.execute(
        update(Notification)
        .where(Notification.user_id == actor.user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
