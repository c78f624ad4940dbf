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
import re
import secrets
import shutil
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

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


_SCHEMA_FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, '|' ORDER BY item), '')) FROM (
  SELECT concat_ws(':', 'n', nspname) FROM pg_namespace
  UNION ALL SELECT concat_ws(':', 'x', extname, extversion) FROM pg_extension
  UNION ALL SELECT concat_ws(':', 'r', n.nspname, c.relname, c.relkind, c.relpersistence,
      CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
      CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  UNION ALL SELECT concat_ws(':', 'a', a.attrelid::regclass, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
      a.attnotnull, a.attisdropped, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND a.attnum > 0
  UNION ALL SELECT concat_ws(':', 'k', conrelid::regclass, conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL SELECT concat_ws(':', 't', tgrelid::regclass, tgname, tgenabled, pg_get_triggerdef(oid))
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT concat_ws(':', 'f', p.oid::regprocedure, md5(p.prosrc))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL SELECT concat_ws(':', 'e', enumtypid::regtype, enumsortorder, enumlabel) FROM pg_enum
  UNION ALL SELECT concat_ws(':', 'p', polrelid::regclass, polname) FROM pg_policy
  UNION ALL SELECT concat_ws(':', 's', array_to_string(setconfig, ',')) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL SELECT concat_ws(':', 'g', count(*)) FROM pg_prepared_xacts WHERE database = current_database()
  UNION ALL SELECT concat_ws(':', 'l', count(*)) FROM pg_largeobject_metadata
) AS schema(item)
"""
"""What a test could change besides rows: if a used database's differs from the template's, it is set aside."""


_DROPPERS = 8
"""Connections that drop the suite's databases at its end (the admin engine's pool holds 5 + 10 overflow)."""


_NO_COMMIT_WAIT = 'ALTER DATABASE "{name}" SET synchronous_commit = off'
"""A commit returns before its WAL reaches the disk (the suite's databases are thrown away; a crash of the
server, which no test causes, could lose the last commits, never corrupt them): about half of a commit's
time on a busy CI disk. Settings of a database are not copied with it, so each new copy gets it again."""


class _Postgres:
    """Creates a migrated template database once, then a copy of it per test.

    `CREATE DATABASE ... TEMPLATE` costs about a second (it copies the system catalogues too), so a released
    copy is emptied instead and handed to the next test: every other connection to it ended, every row of
    every table deleted, the template's own rows (alembic_version) and sequence positions put back. A copy
    whose schema no longer matches the template's (a test disabled a trigger, say) is set aside instead, and
    dropped with the others at the end.
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.prefix = f"market_test_{secrets.token_hex(4)}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []
        self.free: list[str] = []
        self.fingerprint = ""
        self.rows: dict[str, list[dict[str, object]]] = {}
        self.sequences: dict[str, tuple[int, bool]] = {}

    def build_template(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.template}"'))
            connection.execute(text(_NO_COMMIT_WAIT.format(name=self.template)))
        self.created.append(self.template)
        database = Database.from_settings(Settings(database_url=self.url_for(self.template)))
        migrate(database)
        with database.engine.connect() as connection:
            self.fingerprint = connection.execute(text(_SCHEMA_FINGERPRINT)).scalar_one()
            for table in self._tables(connection):
                self.rows[table] = [dict(row) for row in connection.execute(text(f"SELECT * FROM {table}")).mappings()]
            for (sequence,) in connection.execute(
                text("SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences")
            ):
                last, called = connection.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
                self.sequences[sequence] = (int(last), bool(called))
        database.dispose()

    @staticmethod
    def _tables(connection) -> list[str]:
        return list(
            connection.execute(
                text(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
                )
            ).scalars()
        )

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def new_database(self, template: str | None = None) -> str:
        """A copy of the migrated template, or of `template` (a URL this factory made; no one connected)."""
        if template is None and self.free:
            return self.url_for(self.free.pop())
        name = f"{self.prefix}_{secrets.token_hex(4)}"
        source = make_url(template).database if template else self.template
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
            connection.execute(text(_NO_COMMIT_WAIT.format(name=name)))
        self.created.append(name)
        return self.url_for(name)

    def release(self, url: str) -> None:
        name = make_url(url).database
        if not name:
            return
        if self._emptied(name):
            self.free.append(name)
        # Otherwise it is set aside, never handed out again, and dropped with the rest at the end (drop_all):
        # a DROP DATABASE waits for a checkpoint, 1-3 s in the middle of a loaded run.

    def _emptied(self, name: str) -> bool:
        """Put the copy `name` back in the template's state; False if that cannot be done (then it is set aside)."""
        with self.admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
        engine = create_engine(self.url_for(name), poolclass=NullPool)
        try:
            with engine.begin() as connection:
                connection.execute(text("SET LOCAL lock_timeout = '10s'"))
                if connection.execute(text(_SCHEMA_FINGERPRINT)).scalar_one() != self.fingerprint:
                    return False
                connection.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers, no FKs
                tables = self._tables(connection)
                if set(tables) != set(self.rows):
                    return False
                # Every table emptied in one round trip (a statement per table cost ~50 ms a test under load).
                connection.exec_driver_sql("; ".join(f"DELETE FROM {table}" for table in tables))
                for table in tables:
                    rows = self.rows[table]
                    if rows:
                        columns = list(rows[0])
                        names = ", ".join(f'"{column}"' for column in columns)
                        values = ", ".join(f":{column}" for column in columns)
                        connection.execute(text(f"INSERT INTO {table} ({names}) VALUES ({values})"), rows)
                if self.sequences:  # every sequence put back in one statement
                    positions = list(self.sequences.items())
                    calls = ", ".join(f"setval(CAST(:s{i} AS regclass), :l{i}, :c{i})" for i in range(len(positions)))
                    values: dict[str, object] = {}
                    for i, (sequence, (last, called)) in enumerate(positions):
                        values.update({f"s{i}": sequence, f"l{i}": last, f"c{i}": called})
                    connection.execute(text(f"SELECT {calls}"), values)
            return True
        except Exception:  # a lock never released, a schema surprise: a fresh copy is the safe answer
            return False
        finally:
            engine.dispose()

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def drop_all(self) -> None:
        """Drop every database this factory made, several at once.

        Each DROP DATABASE waits for a checkpoint (PostgreSQL 15): one after the other, the suite's hundred
        or so databases took 89 s at the end of a run; concurrent drops share their checkpoints."""
        with ThreadPoolExecutor(max_workers=_DROPPERS) as droppers:
            list(droppers.map(self.drop, self.created))
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


# --- ci-fast: tests that never touch the market database -------------------------------------------------------
# The `db_independent` marker, the `--db-independent={run,deselect,only}` option and the guard that runs such a
# test with an unusable database URL: see tests/db_independent.py (the rule, and why CI runs them once).
from tests import db_independent, hypothesis_ci  # noqa: E402
from tests.db_independent import (  # noqa: E402
    _db_independent_guard,  # noqa: F401
    pytest_addoption,  # noqa: F401
    pytest_collection_modifyitems,  # noqa: F401
)


def pytest_configure(config: pytest.Config) -> None:
    db_independent.pytest_configure(config)
    # tidy16: fewer examples of the slowest property tests under Hypothesis's `ci` profile (tests/hypothesis_ci.py).
    config.pluginmanager.register(hypothesis_ci, "tests.hypothesis_ci")


# -- busy-writers: on SQLite, every write of the marketplace runs in a transaction begun with BEGIN IMMEDIATE --

_WRITE_SQL = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_BEGIN_IMMEDIATE_SQL = re.compile(r"^\s*BEGIN\s+IMMEDIATE\b", re.IGNORECASE)
_IMMEDIATE = "busy_writers_immediate"
_deferred_writes: list[str] = []


def _test_code_writes() -> bool:
    """A write made by the test's own set-up (factories, Market.actor), not by the app, a job or a command:
    test code on the stack, and no command run through click (CliRunner runs `market ...` in this thread)."""
    frame, in_tests = sys._getframe(2), False
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}click{os.sep}" in name:
            return False
        in_tests = in_tests or f"{os.sep}tests{os.sep}" in name
        frame = frame.f_back
    return in_tests


def _check_write_lock(connection, _cursor, statement, _parameters, _context, _executemany) -> None:
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if not driver.in_transaction:  # autocommit: any earlier BEGIN IMMEDIATE has ended
        connection.info.pop(_IMMEDIATE, None)
    if _BEGIN_IMMEDIATE_SQL.match(statement):
        connection.info[_IMMEDIATE] = True
    elif (
        _WRITE_SQL.match(statement)
        and not (driver.in_transaction and connection.info.get(_IMMEDIATE))
        and not _test_code_writes()
    ):
        root = str(Path(__file__).parent.parent) + os.sep
        ours = [
            f for f in traceback.extract_stack()[:-1] if f.filename.startswith(root) and "-packages" not in f.filename
        ]
        where = " < ".join(f"{f.filename.removeprefix(root)}:{f.name}:{f.lineno}" for f in reversed(ours[-6:]))
        _deferred_writes.append(f"{statement.strip()[:60]!r} from {where}")


@pytest.fixture(autouse=True)
def sqlite_writes_begin_immediate() -> Iterator[None]:
    """On SQLite, fail a test in which the app (a request, a job, a command) wrote outside a transaction begun
    with BEGIN IMMEDIATE (market.db's writer lock): such a write would wait in SQLite's sleeping busy handler.
    MARKET_TEST_WRITE_CHECK=0 turns the check off (to measure its cost)."""
    if ON_POSTGRES or os.environ.get("MARKET_TEST_WRITE_CHECK") == "0":
        yield
        return
    _deferred_writes.clear()
    event.listen(Engine, "before_cursor_execute", _check_write_lock)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", _check_write_lock)
    found, _deferred_writes[:] = list(_deferred_writes), []
    assert not found, "writes outside BEGIN IMMEDIATE on SQLite:\n" + "\n".join(found)
