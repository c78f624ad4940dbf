"""Short-lived caches on the query path: API key -> principal, and (buyer, product, agreement) -> what a
query runs under. Invalidated at once, across every API process on the machine, when any row they
depend on changes.

**Invalidation.** Every committed session that inserted, updated or deleted a row of the tables below
(API keys, users, organisations, agreements, products, versions, authorisations), through the unit of
work or an ORM-enabled `UPDATE`/`DELETE`, advances a *generation*: this process's entries are dropped
at once, and one byte is appended to `<data_dir>/run/access-generation`. Every lookup first compares
that file's (inode, size, mtime) with what its entries were read under (one `stat`): another process's
revocation empties this process's cache before the next request is served. The commit happens before
the revoking route answers, and the generation moves right after it, so "revoke, then query" is
refused (401 or 403) by every process.

**Safety net.** Entries also expire after `TTL_SECONDS` of wall-clock time, for changes no session of
this machine made (raw SQL, another machine on the same PostgreSQL), and a prepared query's entry only
holds while the injectable clock (market.clock) is inside its agreement's and its authorisation's
validity, so expiry is decided by time exactly as without the cache.

**Refresh ahead.** A lookup that finds an entry in the last `REFRESH_AHEAD_SECONDS` of its life still
returns it (it is inside its TTL) and has it read again from the database in a background thread (one
at a time per entry): a buyer who keeps querying finds a fresh entry, and no request of theirs waits
for the database read (before, each buyer met one every TTL_SECONDS in every API process, and those
requests were the dashboard's p99; docs/benchmarks.md "perf-p99"). No entry is served past its TTL
unless that read, made after the lookup, found it still valid; a refresh that finds it no longer
valid (or fails) drops it, so the next request reads the database itself and gets its refusal.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

TTL_SECONDS = 5.0
REFRESH_AHEAD_SECONDS = 2.0
"""An entry looked up with less than this left of its TTL is read again in the background."""
WATCHED_TABLES = frozenset(
    {"api_keys", "users", "organisations", "agreements", "products", "product_versions", "authorisations"}
)
MAX_ENTRIES = 10_000
_FLAG = "access_cache_changed"


@dataclass
class _Store:
    generation: tuple[int, int, int]
    principals: dict[str, tuple[Any, float]] = field(default_factory=dict)
    prepared: dict[tuple[str, str, str | None], tuple[Any, float, datetime, datetime]] = field(default_factory=dict)


_stores: dict[Path, _Store] = {}
_lock = threading.Lock()


def _generation_file(run_dir: Path) -> Path:
    found = _GENERATION_FILES.get(run_dir)
    if found is None:
        found = _GENERATION_FILES[run_dir] = run_dir / "access-generation"
    return found


_GENERATION_FILES: dict[Path, Path] = {}
"""Each run directory's generation file, built once: it is looked at a few times per query."""


def _generation(run_dir: Path) -> tuple[int, int, int]:
    try:
        found = os.stat(_generation_file(run_dir))
    except FileNotFoundError:
        return (0, 0, 0)
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _store(run_dir: Path) -> _Store:
    """This directory's entries, emptied first if any process advanced the generation since."""
    current = _generation(run_dir)
    with _lock:
        store = _stores.get(run_dir)
        if store is None or store.generation != current:
            store = _stores[run_dir] = _Store(current)
        return store


def bump(run_dir: Path | None) -> None:
    """Drop every entry of this process, and tell the other processes on the machine to drop theirs."""
    with _lock:
        _stores.clear()
    if run_dir is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with _generation_file(run_dir).open("ab") as generation:
        generation.write(b".")


_refreshing: set[tuple[Path, str, Any]] = set()


def _refresh_ahead(run_dir: Path, kind: str, key: Any, expires: float, refresh: Callable[[], None] | None) -> None:
    """Run `refresh` in a background thread if the entry expires within REFRESH_AHEAD_SECONDS and no refresh
    of it runs yet; when `refresh` raises, the entry is dropped (the next lookup misses)."""
    if refresh is None or expires - time.monotonic() > REFRESH_AHEAD_SECONDS:
        return
    token = (run_dir, kind, key)
    with _lock:
        if token in _refreshing:
            return
        _refreshing.add(token)

    def run() -> None:
        try:
            refresh()
        except Exception:  # revoked, expired, or the database failed: forget it, the request path decides
            store = _stores.get(run_dir)
            if store is not None:
                getattr(store, kind).pop(key, None)
        finally:
            with _lock:
                _refreshing.discard(token)

    threading.Thread(target=run, name=f"access-refresh-{kind}", daemon=True).start()


def principal(run_dir: Path, key_hash: str, refresh: Callable[[], None] | None = None) -> Any | None:
    """The cached principal of `key_hash`, or None. `refresh`: reads it again and remembers it (called in
    the background when the entry is near the end of its TTL, see the module doc)."""
    store = _store(run_dir)
    found = store.principals.get(key_hash)
    if found is None or found[1] < time.monotonic():
        return None
    _refresh_ahead(run_dir, "principals", key_hash, found[1], refresh)
    return found[0]


def remember_principal(run_dir: Path, key_hash: str, value: Any, generation: tuple[int, int, int]) -> None:
    """Keep `value`, read under `generation` (read before the database was): never a stale entry."""
    store = _store(run_dir)
    if store.generation != generation or len(store.principals) >= MAX_ENTRIES:
        return
    store.principals[key_hash] = (value, time.monotonic() + TTL_SECONDS)


def prepared(
    run_dir: Path, key: tuple[str, str, str | None], now: datetime, refresh: Callable[[], None] | None = None
) -> Any | None:
    """The cached entry of `key` valid at `now`, or None; `refresh` as for `principal`."""
    store = _store(run_dir)
    found = store.prepared.get(key)
    if found is None:
        return None
    value, expires, valid_from, valid_until = found
    if expires < time.monotonic() or not valid_from <= now < valid_until:
        return None
    _refresh_ahead(run_dir, "prepared", key, expires, refresh)
    return value


def remember_prepared(
    run_dir: Path,
    key: tuple[str, str, str | None],
    value: Any,
    generation: tuple[int, int, int],
    valid: tuple[datetime, datetime],
) -> None:
    store = _store(run_dir)
    if store.generation != generation or len(store.prepared) >= MAX_ENTRIES:
        return
    store.prepared[key] = (value, time.monotonic() + TTL_SECONDS, valid[0], valid[1])


def generation(run_dir: Path) -> tuple[int, int, int]:
    """Read before the database: an entry is kept only if no change committed since (remember_*)."""
    return _store(run_dir).generation


# -- invalidation: watch every session for changes to the tables the entries depend on --------------


def _touches(objects: Any) -> bool:
    return any(getattr(type(o), "__tablename__", None) in WATCHED_TABLES for o in objects)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    if _touches(session.new) or _touches(session.dirty) or _touches(session.deleted):
        session.info[_FLAG] = True


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete or state.is_insert:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in WATCHED_TABLES:
            state.session.info[_FLAG] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    # SQLAlchemy calls this when a SAVEPOINT is released too (metering.group_commit runs each member of a
    # batch in one): the change is not committed yet, and a process that re-read the row now would keep the
    # old one under the new generation. Only the outermost COMMIT moves it (red team red14).
    if session.in_nested_transaction():
        return
    if session.info.pop(_FLAG, False):
        settings = session.info.get("settings")
        run_dir = getattr(settings, "run_dir", None)
        bump(run_dir if isinstance(run_dir, Path) else None)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous: Any) -> None:
    # A savepoint's rollback leaves the transaction's other changes to commit (kept flagged; a flag whose own
    # change was rolled back costs one needless generation step); the whole transaction's forgets them.
    if not getattr(previous, "nested", False):
        session.info.pop(_FLAG, None)
