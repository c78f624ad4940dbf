"""Test fixtures: a fresh, migrated database per test, on SQLite or on PostgreSQL.

Set MARKET_DATABASE_URL to a PostgreSQL URL to run the suite there. The suite creates its own
databases on that server (a migrated template, then one copy per test) and drops them at the end;
it never touches the database named in the URL.

The demo marketplace (`market.demo.build_demo`: seven users, three products with Parquet builds) is
built once per test session and copied for each user, database and data directory together:

- `demo_market` (per test): a `Market` on a pristine copy of the demo, with `.keys` (an API key per demo
  role) and `.logins` (a web sign-in per role). Use it, or override `market` with it in a module.
- `demo_templates.copy(data_dir, start=..., **settings)` (a context manager, for module-scoped
  fixtures such as tests/browser/conftest.py's `live`): a `Demo` copy (settings, database, keys,
  logins) that you serve yourself; dropped when the block ends. `start` is the clock reading the
  demo is built at (tests/browser's DEMO_START); the copy resumes the clock where that build ended
  (and resets it at the end), so dates in the demo are those of a build made then.

A test that checks the build itself (idempotence, `market demo`) still calls `build_demo` or the CLI.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from market import clock
from market.accounts import service as accounts
from market.accounts.models import OrgKind, Role
from market.accounts.service import Principal
from market.app import create_app
from market.db import Database, migrate
from market.demo import build_demo, demo_logins
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

    def new_database(self, template: str | None = None) -> str:
        """A copy of the migrated template, or of `template` (a URL this factory made; no one connected)."""
        name = f"{self.prefix}_{secrets.token_hex(4)}"
        source = make_url(template).database if template else self.template
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
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

    def new_database(self, template: str | None = None) -> str:
        """A copy of the migrated template, or of `template` (a URL this factory made, checkpointed)."""
        target = self.tmp.mktemp("db") / "market.db"
        shutil.copyfile(Path(template.removeprefix("sqlite:///")) if template else self.template, target)
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


@dataclass
class DemoMarket(Market):
    """A `Market` on a copy of the demo marketplace, with the demo's API keys and web sign-ins by role."""

    keys: dict[str, str] = field(default_factory=dict)
    logins: dict[str, dict[str, str]] = field(default_factory=dict)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def _english_client(settings: Settings, database: Database) -> TestClient:
    # The product answers in zh-CN without a preference; the suite asserts English messages unless a test
    # sends its own Accept-Language (tests/market/test_i18n*.py).
    return TestClient(create_app(settings, database), raise_server_exceptions=False, headers={"Accept-Language": "en"})


@contextmanager
def running_market(database_factory, data_dir: Path, **settings: object) -> Iterator[Market]:
    """A marketplace on its own fresh database and data directory, dropped afterwards."""
    url = database_factory.new_database()
    configured = Settings(data_dir=data_dir, database_url=url, scheduler_enabled=False, **settings)
    database = Database.from_settings(configured)
    with _english_client(configured, database) as client:
        yield Market(settings=configured, database=database, client=client)
    database.dispose()
    database_factory.release(url)


@pytest.fixture
def market(database_factory, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data") as running:
        yield running


@dataclass(frozen=True)
class _DemoTemplate:
    url: str
    data_dir: Path
    keys: dict[str, str]
    logins: dict[str, dict[str, str]]
    built_at: datetime | None
    """The clock's reading when the build ended, for a build made at a given start; None: the clock as it ran."""


@dataclass
class Demo:
    """A copy of the demo marketplace: its settings and database, an API key and a web sign-in per demo role."""

    settings: Settings
    database: Database
    keys: dict[str, str]
    logins: dict[str, dict[str, str]]


class DemoTemplates:
    """The demo marketplace built once per session (per clock start), copied per user: see the module doc."""

    def __init__(self, database_factory, tmp: pytest.TempPathFactory) -> None:
        self.factory = database_factory
        self.tmp = tmp
        self.built: dict[datetime | None, _DemoTemplate] = {}

    def template(self, start: datetime | None) -> _DemoTemplate:
        if start in self.built:
            return self.built[start]
        url = self.factory.new_database()
        settings = Settings(data_dir=self.tmp.mktemp("demo-template"), database_url=url, scheduler_enabled=False)
        database = Database.from_settings(settings)
        if start is not None:
            clock.set_start(start)
        try:
            keys = build_demo(database, settings)
            logins = demo_logins(database)
            built_at = clock.utcnow() if start is not None else None
            if not ON_POSTGRES:  # the copy is the file alone: everything in it, no WAL beside it
                with database.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            database.dispose()
        self.built[start] = _DemoTemplate(url, settings.data_dir, keys, logins, built_at)
        return self.built[start]

    @contextmanager
    def copy(self, data_dir: Path, *, start: datetime | None = None, **settings: object) -> Iterator[Demo]:
        """A copy of the demo built at clock reading `start` (None: now), in `data_dir`; dropped afterwards."""
        template = self.template(start)
        url = self.factory.new_database(template.url)
        # Product files are named relative to the data directory (products/<id>/v<n>/...), so the copy moves.
        shutil.copytree(template.data_dir, data_dir)
        if template.built_at is not None:
            clock.set_start(template.built_at)
        configured = Settings(data_dir=data_dir, database_url=url, scheduler_enabled=False, **settings)
        database = Database.from_settings(configured)
        try:
            yield Demo(configured, database, dict(template.keys), {k: dict(v) for k, v in template.logins.items()})
        finally:
            if template.built_at is not None:
                clock.reset()
            database.dispose()
            self.factory.release(url)
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_templates(database_factory, tmp_path_factory: pytest.TempPathFactory) -> DemoTemplates:
    return DemoTemplates(database_factory, tmp_path_factory)


@pytest.fixture
def demo_market(demo_templates: DemoTemplates, tmp_path: Path) -> Iterator[DemoMarket]:
    """A `Market` on a pristine copy of the demo marketplace (built once per session), with its keys and sign-ins."""
    with demo_templates.copy(tmp_path / "data") as demo, _english_client(demo.settings, demo.database) as client:
        yield DemoMarket(
            settings=demo.settings, database=demo.database, client=client, keys=demo.keys, logins=demo.logins
        )


@pytest.fixture
def billed_period_clock() -> Iterator[None]:
    """Billing tests make usage inside a past period, then move the clock past its end to finalize."""
    from tests.billing.helpers import in_billed_period

    with in_billed_period():
        yield
