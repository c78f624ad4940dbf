"""HTTP routes for the caller's own in-app notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from market.deps import PrincipalDep, SessionDep
from market.notifications import service


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


class NotificationList(BaseModel):
    unread: int
    items: list[NotificationOut]


class MarkedRead(BaseModel):
    marked: int


router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.get("", response_model=NotificationList)
def list_notifications(
    session: SessionDep,
    principal: PrincipalDep,
    unread: bool = False,
    limit: int = Query(default=50, ge=1, le=200),
) -> NotificationList:
    """The caller's notifications, newest first (`?unread=true` for unread ones only)."""
    items = service.mine(session, principal, unread_only=unread, limit=limit)
    return NotificationList(
        unread=service.unread_count(session, principal),
        items=[NotificationOut.model_validate(n) for n in items],
    )


@router.post("/{notification_id}/read", response_model=NotificationOut)
def read_notification(notification_id: str, session: SessionDep, principal: PrincipalDep) -> NotificationOut:
    """Mark one of the caller's notifications read."""
    return NotificationOut.model_validate(service.mark_read(session, principal, notification_id))


@router.post("/read-all", response_model=MarkedRead)
def read_all(session: SessionDep, principal: PrincipalDep) -> MarkedRead:
    """Mark every unread notification of the caller read."""
    return MarkedRead(marked=service.mark_all_read(session, principal))
