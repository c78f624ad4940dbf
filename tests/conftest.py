"""Test fixtures: a fresh, migrated database per test, on SQLite or on PostgreSQL.

Set MARKET_DATABASE_URL to a PostgreSQL URL to run the suite there. The suite creates its own
databases on that server (a migrated template, then one copy per test) and drops them at the end;
it never touches the database named in the URL.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from market.accounts import service as accounts
from market.accounts.models import OrgKind, Role
from market.accounts.service import Principal
from market.app import create_app
from market.db import Database, migrate
from market.settings import Settings

BASE_URL = os.environ.get("MARKET_DATABASE_URL", "")
ON_POSTGRES = BASE_URL.startswith("postgresql")


class _Postgres:
    """Creates a migrated template database once, then a copy of it per test."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.prefix = f"market_test_{secrets.token_hex(4)}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []

    def build_template(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.template}"'))
        self.created.append(self.template)
        database = Database.from_settings(Settings(database_url=self.url_for(self.template)))
        migrate(database)
        database.dispose()

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def new_database(self) -> str:
        name = f"{self.prefix}_{secrets.token_hex(4)}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        self.created.append(name)
        return self.url_for(name)

    def release(self, url: str) -> None:
        name = make_url(url).database
        if name:
            self.drop(name)
            self.created.remove(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self.drop(name)
        self.admin.dispose()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if ON_POSTGRES:
        postgres = _Postgres(BASE_URL)
        postgres.build_template()
        yield postgres
        postgres.drop_all()
        return
    template_dir = tmp_path_factory.mktemp("template")
    template = template_dir / "market.db"
    database = Database.from_settings(Settings(data_dir=template_dir))
    migrate(database)
    with database.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()

    yield _SQLite(template, tmp_path_factory)


class _SQLite:
    """Copies a migrated template database file per test."""

    def __init__(self, template: Path, tmp: pytest.TempPathFactory) -> None:
        self.template = template
        self.tmp = tmp

    def new_database(self) -> str:
        target = self.tmp.mktemp("db") / "market.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    def release(self, url: str) -> None:
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)


@dataclass
class Actor:
    """A user created for a test, with a live API key."""

    principal: Principal
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Market:
    """A running marketplace for one test: settings, database, HTTP client and actor factories."""

    settings: Settings
    database: Database
    client: TestClient
    _count: list[int] = field(default_factory=lambda: [0])

    def actor(self, role: Role, org: str | None = None) -> Actor:
        """A new user with `role` in organisation `org` (created if needed), with an API key."""
        kind = {
            Role.REGULATOR: OrgKind.AUTHORITY,
            Role.SOURCE: OrgKind.SOURCE,
            Role.OPERATOR: OrgKind.OPERATOR,
            Role.BUYER: OrgKind.BUYER,
            Role.FINANCE: OrgKind.PLATFORM,
            Role.ADMIN: OrgKind.PLATFORM,
        }[role]
        self._count[0] += 1
        n = self._count[0]
        org_name = org or f"{role.value} org {n}"
        from market.accounts import repository

        with self.database.transaction() as session:
            organisation = repository.org_by_name(session, org_name) or accounts.create_org(
                session, None, name=org_name, kind=kind
            )
            user = accounts.create_user(
                session,
                None,
                org=organisation,
                name=f"{role.value} {n}",
                email=f"{role.value}{n}@test.example",
                role=role,
            )
            _, key = accounts.issue_key(session, None, user=user)
            principal = Principal(user_id=user.id, org_id=organisation.id, org_name=organisation.name, role=role)
        return Actor(principal=principal, key=key)


@contextmanager
def running_market(database_factory, data_dir: Path, **settings: object) -> Iterator[Market]:
    """A marketplace on its own fresh database and data directory, dropped afterwards."""
    url = database_factory.new_database()
    configured = Settings(data_dir=data_dir, database_url=url, scheduler_enabled=False, **settings)
    database = Database.from_settings(configured)
    app = create_app(configured, database)
    # The product answers in zh-CN without a preference; the suite asserts English messages unless a test
    # sends its own Accept-Language (tests/market/test_i18n*.py).
    with TestClient(app, raise_server_exceptions=False, headers={"Accept-Language": "en"}) as client:
        yield Market(settings=configured, database=database, client=client)
    database.dispose()
    database_factory.release(url)


@pytest.fixture
def market(database_factory, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data") as running:
        yield running


@pytest.fixture
def billed_period_clock() -> Iterator[None]:
    """Billing tests make usage inside a past period, then move the clock past its end to finalize."""
    from tests.billing.helpers import in_billed_period

    with in_billed_period():
        yield
