"""Resumable uploads: a file sent in parts at increasing offsets, then stored as an ordinary Upload.

The browser starts a session with the file's name and size, then sends slices of the File (never the
whole file in memory) each with a `Content-Range: bytes START-END/SIZE` header. The server appends each
part to a file on disk; that file's length is the offset the next part must start at. After a network
error or a reload the browser asks for the offset and sends the rest. When the last byte arrives the
file is hashed from disk and registered exactly like POST /v1/uploads (products.pipeline.uploads).

Parts of one session are appended under an exclusive lock on its file, so two tabs (or two API
processes) sending the same part cannot interleave their bytes: the second finds the offset moved and
is told where to resume.

Each part sets the file's modification time from the market's clock: the upkeep job removes sessions
no part has touched for `MARKET_UPLOAD_SESSION_TTL_HOURS` (sweep_abandoned), their bytes and their row.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, NotFound, Unprocessable
from market.settings import Settings
from products import storage
from products.pipeline import encodings, uploads
from products.pipeline.models import Upload, UploadSession

RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
HASH_BLOCK = 1 << 20


def part_path(settings: Settings, upload_session: UploadSession) -> Path:
    return uploads.org_dir(settings, upload_session.org_id) / f".session-{upload_session.id}"


def _touch(target: Path | int) -> None:
    """Mark the session's file touched now, on the market's clock (what sweep_abandoned reads)."""
    moment = utcnow().timestamp()
    os.utime(target, (moment, moment))


def begin(session: Session, settings: Settings, actor: Principal, filename: str, size: int) -> UploadSession:
    """A new session for a file of `size` bytes; nothing received yet."""
    actor.require(Role.OPERATOR)
    storage.file_kind(filename)
    if not 0 < size <= uploads.MAX_UPLOAD_BYTES:
        raise Unprocessable("upload_size_invalid", limit_gib=uploads.MAX_UPLOAD_BYTES // 1024**3)
    started = UploadSession(org_id=actor.org_id, filename=filename, size_bytes=size, created_by=actor.user_id)
    session.add(started)
    session.flush()
    path = part_path(settings, started)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    _touch(path)
    return started


def own_session(session: Session, actor: Principal, session_id: str, *, lock: bool = False) -> UploadSession:
    """The actor's organisation's session `session_id`; `lock`: its row locked for the transaction (PostgreSQL's
    FOR UPDATE; SQLite's writer lock serializes writers already), so that two requests completing it store it once."""
    actor.require(Role.OPERATOR)
    found = session.get(UploadSession, session_id, with_for_update=lock)
    if found is None or found.org_id != actor.org_id:
        raise NotFound("upload_session_not_found", session=session_id)
    return found


def offset(settings: Settings, upload_session: UploadSession) -> int:
    """How many bytes the server has: the next part starts here."""
    if upload_session.upload_id is not None:
        return upload_session.size_bytes
    path = part_path(settings, upload_session)
    return path.stat().st_size if path.exists() else 0


def parse_range(header: str | None, size: int) -> tuple[int, int]:
    """(start, end exclusive) of a `bytes START-END/SIZE` Content-Range inside a file of `size` bytes."""
    found = RANGE.match((header or "").strip())
    if not found:
        raise Unprocessable("upload_range_invalid", size=size)
    start, last, total = (int(g) for g in found.groups())
    if total != size or last < start or last >= size:
        raise Unprocessable("upload_range_invalid", size=size)
    return start, last + 1


async def append(
    settings: Settings, upload_session: UploadSession, start: int, end: int, chunks: AsyncIterator[bytes]
) -> int:
    """Append the part [start, end) streamed in `chunks`; returns the new offset.

    A part that starts anywhere but the current offset is refused (409, with the offset to resume from).
    A connection lost mid-part keeps the bytes that arrived: the offset says where to go on.
    """
    path = part_path(settings, upload_session)
    if not path.exists():
        raise NotFound("upload_session_not_found", session=upload_session.id)
    with path.open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("upload_offset_mismatch", offset=path.stat().st_size, start=start) from None
        if not _still_linked(path, handle):  # swept while this part waited for the lock
            raise NotFound("upload_session_not_found", session=upload_session.id)
        current = handle.tell()
        if current != start:
            raise Conflict("upload_offset_mismatch", offset=current, start=start)
        written = current
        async for chunk in chunks:
            if written + len(chunk) > end:
                handle.flush()
                handle.truncate(written)
                raise Unprocessable("upload_range_invalid", size=upload_session.size_bytes)
            handle.write(chunk)
            written += len(chunk)
        handle.flush()
        _touch(handle.fileno())
        return written


def _still_linked(path: Path, handle: IO[bytes]) -> bool:
    """Whether `handle` is still the file at `path` (the sweep unlinks a session's file under its lock)."""
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def prepare(settings: Settings, upload_session: UploadSession) -> uploads.Received | None:
    """Every byte is here: hash the file as sent, then read it for its encoding (and rewrite a GB18030 or UTF-16
    CSV as UTF-8, products.pipeline.encodings), outside any transaction, so that no writer waits on a pass over a
    large file. None when the file is gone (another request completed the session meanwhile). A file that is no
    text the upload reads is emptied and refused (`invalid_upload`): the session starts again from offset 0.

    The conversion works on a second link to the session's file: the session's own file keeps the bytes sent, so
    its length (the offset a browser resumes from) stays the size sent while the conversion runs, and no part can
    be appended to the converted text (red22: it was rewritten in place, half the size for UTF-16)."""
    path = part_path(settings, upload_session)
    private = path.with_name(f"{path.name}.prepared-{secrets.token_hex(8)}")  # swept like the session's file
    try:
        os.link(path, private)
    except FileNotFoundError:
        return None
    try:
        sent = _received(private)
        encodings.as_utf8(private, upload_session.filename)
    except Unprocessable:
        private.unlink(missing_ok=True)
        # Emptied, not removed: the session says offset 0, and the console's Retry (the same session) sends the file
        # again from there, refused again with the same reason (red22: removed, it was "not found" forever).
        with suppress(FileNotFoundError):
            os.truncate(path, 0)
        raise
    except BaseException:
        private.unlink(missing_ok=True)
        raise
    return replace(sent, utf8=True)


def _received(path: Path) -> uploads.Received:
    """The file at `path` as received: its SHA-256 and size, as its bytes are now."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return uploads.Received(path=path, sha256=digest.hexdigest(), size=path.stat().st_size)


def complete(
    session: Session,
    settings: Settings,
    actor: Principal,
    upload_session: UploadSession,
    prepared: uploads.Received | None = None,
) -> Upload:
    """Store the session's file as an Upload (the same path as POST /v1/uploads), `prepared` by prepare outside
    the transaction; without it, hashed and read here."""
    if upload_session.upload_id is not None:
        if prepared is not None:
            prepared.path.unlink(missing_ok=True)
        stored = session.get(Upload, upload_session.upload_id)
        assert stored is not None
        return stored
    received = prepared or _received(part_path(settings, upload_session))
    stored, _ = uploads.register(
        session,
        settings,
        actor,
        received,
        filename=upload_session.filename,
        idempotency_key=f"session-{upload_session.id}",
    )
    part_path(settings, upload_session).unlink(missing_ok=True)  # the bytes as sent, when `prepared` was converted
    upload_session.upload_id = stored.id
    session.flush()
    return stored


def sweep_abandoned(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Remove the unfinished sessions no part has touched for the settings' TTL: their bytes, then their row.

    A session whose part is arriving holds its file's lock, and one touched since the cutoff is kept; a
    part that was waiting for the lock when the file went finds the session gone (404) and starts again."""
    cutoff = now - timedelta(hours=settings.upload_session_ttl_hours)
    stale = session.scalars(
        select(UploadSession).where(UploadSession.upload_id.is_(None), UploadSession.created_at < cutoff)
    ).all()
    removed = 0
    for found in stale:
        if _remove_if_idle(part_path(settings, found), cutoff):
            session.delete(found)
            removed += 1
    session.flush()
    # A file whose session never committed (its start failed after the file was made) has no row to find.
    files = {path.name.removeprefix(".session-"): path for path in settings.uploads_dir.glob("*/.session-*")}
    known = set(session.scalars(select(UploadSession.id).where(UploadSession.id.in_(files)))) if files else set()
    for session_id, path in files.items():
        if session_id not in known and _remove_if_idle(path, cutoff):
            removed += 1
    return {"upload_sessions_removed": removed}


def _remove_if_idle(path: Path, cutoff: datetime) -> bool:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a part is arriving now
        if os.fstat(handle.fileno()).st_mtime >= cutoff.timestamp():
            return False
        path.unlink(missing_ok=True)
    return True
