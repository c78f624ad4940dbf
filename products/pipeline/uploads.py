"""Uploads streamed to disk in chunks, addressed by their SHA-256, and safe to retry.

A retry with the same Idempotency-Key returns the stored upload (or 409 if the bytes differ); the same
bytes uploaded again by the same organisation reuse the stored file. Nothing is read whole into memory.
A CSV in GB18030 (GBK) or UTF-16 is stored as UTF-8, a spreadsheet as the CSV of its one sheet
(products.pipeline.encodings, workbooks); its SHA-256 stays that of the bytes sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.errors import Conflict, NotFound, Unprocessable
from market.settings import Settings
from products import storage
from products.pipeline import encodings
from products.pipeline.models import Upload

MAX_UPLOAD_BYTES = 50 * 1024**3
"""The largest upload accepted (50 GiB); bigger files should be split per table or per period."""


@dataclass(frozen=True)
class Received:
    """A request body written to a temporary file, with its hash and size."""

    path: Path
    sha256: str
    size: int
    utf8: bool = False
    """Whether the file was already read for its encoding (encodings.as_utf8) outside the transaction that
    registers it (resumable.prepare): register then does not read it again."""


def org_dir(settings: Settings, org_id: str) -> Path:
    return settings.uploads_dir / org_id


def stored_path(settings: Settings, upload: Upload) -> Path:
    return org_dir(settings, upload.org_id) / upload.stored_name


async def receive(settings: Settings, actor: Principal, chunks: AsyncIterator[bytes]) -> Received:
    """Write the body to a temporary file chunk by chunk, hashing as it goes (operators only: nobody
    else may fill the disk, even for the moment before `register` refuses them)."""
    actor.require(Role.OPERATOR)
    directory = org_dir(settings, actor.org_id)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".incoming-{secrets.token_hex(8)}"
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise Unprocessable("upload_too_large", limit_gib=MAX_UPLOAD_BYTES // 1024**3)
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Received(path=partial, sha256=digest.hexdigest(), size=size)


def register(
    session: Session,
    settings: Settings,
    actor: Principal,
    received: Received,
    *,
    filename: str,
    idempotency_key: str | None,
) -> tuple[Upload, bool]:
    """Keep the received file (or reuse an identical one) and record it; returns (upload, created)."""
    try:
        actor.require(Role.OPERATOR)
        kind = storage.file_kind(filename)
        if received.size == 0:
            raise Unprocessable("upload_empty", file=filename)
        if not received.utf8:
            # Before the first statement: a writer's transaction takes the lock only then (market.db), so reading
            # (and rewriting) a large file holds no lock.
            encodings.as_utf8(received.path, filename)
        if idempotency_key:
            previous = session.scalars(
                select(Upload).where(Upload.org_id == actor.org_id, Upload.idempotency_key == idempotency_key)
            ).one_or_none()
            if previous is not None:
                if previous.sha256 != received.sha256:
                    raise Conflict("idempotency_conflict", key=idempotency_key)
                return previous, False
        suffix = ".parquet" if kind == "parquet" else (".csv.gz" if filename.lower().endswith(".gz") else ".csv")
        stored_name = f"{received.sha256}{suffix}"
        target = org_dir(settings, actor.org_id) / stored_name
        if target.exists():
            received.path.unlink(missing_ok=True)
        else:
            os.replace(received.path, target)
        upload = Upload(
            org_id=actor.org_id,
            idempotency_key=idempotency_key,
            filename=re.sub(r"[^\w.\-]", "_", Path(filename).name)[:300],
            sha256=received.sha256,
            size_bytes=received.size,
            stored_name=stored_name,
            created_by=actor.user_id,
        )
        session.add(upload)
        session.flush()
        return upload, True
    finally:
        received.path.unlink(missing_ok=True)


def own_upload(session: Session, actor: Principal, upload_id: str) -> Upload:
    actor.require(Role.OPERATOR)
    upload = session.get(Upload, upload_id)
    if upload is None or upload.org_id != actor.org_id:
        raise NotFound("upload_not_found", upload=upload_id)
    return upload


def of_org(session: Session, actor: Principal) -> list[Upload]:
    actor.require(Role.OPERATOR)
    return list(
        session.scalars(select(Upload).where(Upload.org_id == actor.org_id).order_by(Upload.created_at.desc())).all()
    )
