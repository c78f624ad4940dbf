"""FastAPI dependencies: one session per request, committed or rolled back here, and the caller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from market import access_cache, phases
from market.accounts.service import Principal, authenticate, hash_key
from market.db import Database
from market.settings import Settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def writes(request: Request) -> bool:
    """Whether the request's session is a writer: a POST, PUT, PATCH or DELETE (market.db.begin_write)."""
    return request.method in WRITE_METHODS


def get_session(request: Request) -> Iterator[Session]:
    """The request's session: committed when the route returns, rolled back when it raises.

    Function-scoped (below), so the commit happens before the response is sent: a 2xx means the
    change is stored, and a commit that fails turns the answer into an error, never a 2xx.

    A mutating request's session is a writer (`Database.transaction(write=True)`): on SQLite it takes the
    writer lock when it first touches the database, so its writes never wait in SQLite's busy handler.
    A route whose long work (a build, a call to Stripe) must not hold the lock takes `ReadSessionDep`
    and writes in transactions of its own."""
    phases.on_thread("get_session")
    with get_database(request).transaction(write=writes(request)) as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    """A request's session that stays a reader whatever the method (see get_session)."""
    phases.on_thread("get_read_session")
    with get_database(request).transaction() as session:
        yield session


def _authenticate(request: Request, clear: str | None) -> Principal:
    # Authentication gets its own short session so that a failed query's rollback never undoes it.
    phases.on_thread("_authenticate")
    with get_database(request).transaction() as session:
        return authenticate(session, clear)


def _refresh_principal(database: Database, run_dir: Path, key_hash: str, clear: str) -> None:
    """Read the caller again and keep it (market.access_cache's refresh ahead, in a background thread)."""
    generation = access_cache.generation(run_dir)
    with database.transaction() as session:
        principal = authenticate(session, clear)
    access_cache.remember_principal(run_dir, key_hash, principal, generation)


async def get_principal(request: Request) -> Principal:
    """The caller, from its bearer key: from the short-lived key cache (market.access_cache, emptied
    at once when a key, user or organisation changes), else from the database in a worker thread.

    Async, so a cached caller costs no thread hop; only a database read goes to the threadpool."""
    phases.on_thread("get_principal")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    clear = token.strip() if scheme.lower() == "bearer" else None
    if not clear:
        return await run_in_threadpool(_authenticate, request, clear)
    started = time.perf_counter()
    run_dir = get_settings_dep(request).run_dir
    key_hash = hash_key(clear)
    database = get_database(request)
    found = access_cache.principal(run_dir, key_hash, lambda: _refresh_principal(database, run_dir, key_hash, clear))
    if isinstance(found, Principal):
        phases.add("auth (key cache hit)", time.perf_counter() - started)
        return found
    generation = access_cache.generation(run_dir)
    principal = await run_in_threadpool(_authenticate, request, clear)
    access_cache.remember_principal(run_dir, key_hash, principal, generation)
    phases.add("auth (database)", time.perf_counter() - started)
    return principal


async def _database(request: Request) -> Database:
    phases.on_thread("_database")
    return get_database(request)


async def _settings(request: Request) -> Settings:
    phases.on_thread("_settings")
    return get_settings_dep(request)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
# Plain attribute reads: async, so FastAPI calls them on the event loop, not through a thread hop each.
SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]
