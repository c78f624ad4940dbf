"""Organisations, the users who act for them, and their hashed API keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base


class Role(StrEnum):
    """What a user may do (DOMAIN.md, Actors)."""

    REGULATOR = "regulator"
    SOURCE = "source"
    OPERATOR = "operator"
    BUYER = "buyer"
    FINANCE = "finance"
    ADMIN = "admin"


class OrgKind(StrEnum):
    """What an organisation is: the data authority, a source department, an operator, a buyer or the platform."""

    AUTHORITY = "authority"
    SOURCE = "source"
    OPERATOR = "operator"
    BUYER = "buyer"
    PLATFORM = "platform"


ROLES_BY_KIND: dict[OrgKind, frozenset[Role]] = {
    OrgKind.AUTHORITY: frozenset({Role.REGULATOR}),
    OrgKind.SOURCE: frozenset({Role.SOURCE}),
    OrgKind.OPERATOR: frozenset({Role.OPERATOR}),
    OrgKind.BUYER: frozenset({Role.BUYER}),
    OrgKind.PLATFORM: frozenset({Role.FINANCE, Role.ADMIN}),
}


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("org"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The profile printed on invoices and statements; None is "not provided", shown as missing, never as a zero.
    uscc: Mapped[str | None] = mapped_column(String(18), default=None)
    """统一社会信用代码 (unified social credit code, GB 32100-2015), checksum-validated."""
    address: Mapped[str | None] = mapped_column(String(500), default=None)
    contact_name: Mapped[str | None] = mapped_column(String(200), default=None)
    contact_phone: Mapped[str | None] = mapped_column(String(40), default=None)
    contact_email: Mapped[str | None] = mapped_column(String(320), default=None)
    bank_name: Mapped[str | None] = mapped_column(String(200), default=None)
    """开户行: the bank and branch holding the organisation's account."""
    bank_account: Mapped[str | None] = mapped_column(String(64), default=None)


PROFILE_FIELDS = ("uscc", "address", "contact_name", "contact_phone", "contact_email", "bank_name", "bank_account")


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("usr"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    """An argon2id hash of the web console password; None means the user cannot sign in on the web."""
    deactivated_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set when an admin deactivates the user: no sign-in, no API key works, open sessions end."""


class ApiKey(Base):
    """An API key. Only its SHA-256 hash is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("key"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    """The first characters of the key, kept in clear so a user can tell keys apart."""
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A signed-in browser. Only the SHA-256 hash of the cookie's token is stored, as for API keys."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ses"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set by logout, or when an admin sets the user's password."""


class LoginAttempt(Base):
    """A failed sign-in, counted per account and per client address to rate-limit guessing."""

    __tablename__ = "login_attempts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("lga"))
    email: Mapped[str] = mapped_column(String(320), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AdminActivity(Base):
    """One thing an admin did to organisations, users or API keys: kept for ever, shown in the admin's log."""

    __tablename__ = "admin_activity"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("act"))
    actor_user_id: Mapped[str] = mapped_column(String(32), index=True)
    action: Mapped[str] = mapped_column(String(40))
    """A stable code, e.g. `user_created`, `user_deactivated`, `key_revoked` (docs/console.md lists them)."""
    subject: Mapped[str] = mapped_column(String(64))
    """The id of the organisation, user or key acted on."""
    detail: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
