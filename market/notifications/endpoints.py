"""HTTP routes for the caller's own in-app notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from market.deps import PrincipalDep, SessionDep
from market.notifications import service
from market.pagination import CursorQuery, LimitQuery, Page, page_of


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    subject: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
    email_status: str


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    marked: int


router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.get("", response_model=Page[NotificationOut])
def list_notifications(
    session: SessionDep,
    principal: PrincipalDep,
    unread: bool = False,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[NotificationOut]:
    """The caller's notifications (`?unread=true` for unread ones only); newest first (`created_at`, `id`)."""
    found = service.mine(session, principal, unread_only=unread)
    rows, next_cursor = page_of(found, key=lambda n: (n.created_at, n.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=[NotificationOut.model_validate(n) for n in rows], next_cursor=next_cursor)


@router.get("/unread", response_model=UnreadCount)
def unread(session: SessionDep, principal: PrincipalDep) -> UnreadCount:
    """How many of the caller's notifications are unread (for a badge)."""
    return UnreadCount(unread=service.unread_count(session, principal))


@router.post("/{notification_id}/read", response_model=NotificationOut)
def read_notification(notification_id: str, session: SessionDep, principal: PrincipalDep) -> NotificationOut:
    """Mark one of the caller's notifications read."""
    return NotificationOut.model_validate(service.mark_read(session, principal, notification_id))


@router.post("/read-all", response_model=MarkedRead)
def read_all(session: SessionDep, principal: PrincipalDep) -> MarkedRead:
    """Mark every unread notification of the caller read."""
    return MarkedRead(marked=service.mark_all_read(session, principal))
