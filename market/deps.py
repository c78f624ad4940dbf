"""FastAPI dependencies: one session per request, committed or rolled back here, and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from market.accounts.service import Principal, authenticate
from market.db import Database
from market.settings import Settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """The request's session: committed when the route returns, rolled back when it raises.

    Function-scoped (below), so the commit happens before the response is sent: a 2xx means the
    change is stored, and a commit that fails turns the answer into an error, never a 2xx."""
    with get_database(request).transaction() as session:
        yield session


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    clear = token.strip() if scheme.lower() == "bearer" else None
    # Authentication gets its own short session so that a failed query's rollback never undoes it.
    with get_database(request).transaction() as session:
        return authenticate(session, clear)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
