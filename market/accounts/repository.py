"""All SQL for organisations, users and API keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import ApiKey, Organisation, User


def org_by_name(session: Session, name: str) -> Organisation | None:
    return session.scalars(select(Organisation).where(Organisation.name == name)).one_or_none()


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email)).one_or_none()


def active_key_by_hash(session: Session, key_hash: str) -> tuple[ApiKey, User, Organisation] | None:
    row = session.execute(
        select(ApiKey, User, Organisation)
        .join(User, User.id == ApiKey.user_id)
        .join(Organisation, Organisation.id == User.org_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None), User.deactivated_at.is_(None))
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def list_orgs(session: Session) -> Sequence[Organisation]:
    return session.scalars(select(Organisation).order_by(Organisation.name)).all()


def list_users(session: Session, org_id: str | None = None) -> Sequence[User]:
    query = select(User).order_by(User.email)
    if org_id is not None:
        query = query.where(User.org_id == org_id)
    return session.scalars(query).all()


def keys_of_org(session: Session, org_id: str) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).join(User, User.id == ApiKey.user_id).where(User.org_id == org_id).order_by(ApiKey.created_at)
    ).all()
