"""Uploads: files streamed to disk once, addressed by content hash, safe to retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class BuildJob(Base):
    """One build of a product's next version, run in the background with its stage for the page to poll.

    `active` holds the product's id while the build runs and NULL once it has ended: the unique constraint
    lets exactly one build per product run at a time, whichever API process starts it. A running build
    renews `heartbeat_at`; one whose heartbeat is older than the lease (the process was killed) is
    marked failed by the next reader, so no product stays "building" for ever.
    """

    __tablename__ = "build_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("bld"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    active: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    state: Mapped[str] = mapped_column(String(16), default="running")
    """running, done or failed."""
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    """queued, reading, cleaning, desensitising, statistics, audit, saving, done."""
    table_name: Mapped[str | None] = mapped_column(String(63), default=None)
    rows_done: Mapped[int | None] = mapped_column(BigInteger, default=None)
    rows_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_params: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    version_number: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class UploadSession(Base):
    """A resumable upload: the file arrives in parts at increasing offsets, then becomes an Upload.

    The bytes received so far sit in a file under the organisation's upload directory; its length is the
    offset the next part must start at, so a browser that lost its connection (or was reloaded) asks for
    it and sends the rest.
    """

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ups"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    """The whole file's size, announced when the session starts."""
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id"), default=None)
    """The stored upload, once every byte has arrived."""
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
