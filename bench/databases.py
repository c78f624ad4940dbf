"""Run one benchmark on SQLite and on a scratch PostgreSQL database, side by side in one run."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from market.db import Database
from market.settings import Settings

T = TypeVar("T")


def on_both_databases(
    run: Callable[[Database, str], T], postgres: str, *, skip_postgres: bool, skip_sqlite: bool = False
) -> list[T]:
    """`run(database, name)` on a fresh SQLite file, then (unless skipped) on a scratch database created
    on the `postgres` server and dropped afterwards; the results in that order."""
    results = []
    if not skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            database = Database.from_settings(Settings(data_dir=Path(tmp)))
            results.append(run(database, "sqlite"))
            database.dispose()
    if skip_postgres:
        return results
    name = f"market_bench_{secrets.token_hex(4)}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
        database = Database.from_settings(Settings(database_url=url))
        results.append(run(database, "postgresql"))
        database.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return results
