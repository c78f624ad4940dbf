"""Uploads: files streamed to disk once, addressed by content hash, safe to retry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base


class Upload(Base):
    """A file an operator uploaded, stored under its SHA-256; a retry with the same key or bytes reuses it."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("org_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("upl"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    filename: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    """Size of the stored file, in bytes."""
    stored_name: Mapped[str] = mapped_column(String(200))
    """File name under the organisation's upload directory."""
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
