"""The notification outbox: one row per user and event, shown in-app and sent by e-mail once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base


class EmailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    """Gave up after the last retry; the in-app notification stays."""
    NONE = "none"
    """The user has no address or e-mail is not configured."""


class Notification(Base):
    """One message to one user. `dedupe_key` makes each event notify each user once, whoever raises it."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        Index("ix_notifications_email_due", "email_status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ntf"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(50))
    """A stable snake_case code, also the key of its subject in market/messages.py."""
    dedupe_key: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]
    """The objects the notification is about (ids, amounts), for links and programs."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    email_to: Mapped[str] = mapped_column(String(320), default="")
    email_status: Mapped[str] = mapped_column(String(10), default=EmailStatus.PENDING.value)
    email_attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the next delivery attempt may start; a claim moves it forward, so others skip the row."""
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
