"""The database: declarative base, portable column types, engines, sessions and migrations.

The schema is portable between SQLite (the embedded default) and PostgreSQL (production).
Migrations are Alembic's, applied with `migrate()` by `market serve`, `market demo` and the tests.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker
from sqlalchemy.types import TypeDecorator

from market import phases
from market.locks import lock, release
from market.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use market.clock.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL, INTEGER on SQLite (so that SQLite's rowid autoincrement still works).
BigInt = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
# JSONB on PostgreSQL, JSON text on SQLite.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets a CLI command write while the server reads; the busy timeout makes writers queue
    # instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SQLITE_BUSY_TIMEOUT_MS = 15_000


_LONGER_WAIT = "busy_timeout_raised"


def _sqlite_default_busy_timeout(dbapi_connection: Any, record: Any) -> None:
    # A connection back in the pool forgets a longer wait set by `wait_longer_for_locks` (only then:
    # a statement on every checkin would cost every request a round through SQLite).
    if dbapi_connection is not None and record is not None and record.info.pop(_LONGER_WAIT, False):
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


POOL_SIZE = 40
"""Pooled connections kept per API process: as many as request threads can hold at once (anyio's
threadpool runs at most 40 sync routes and dependencies at a time), so that under load no connection
is opened for one request and closed after it (an overflow connection: a new PostgreSQL backend, or a
SQLite file opened and its PRAGMAs run, on the request's path). Connections are opened on demand, so
an idle process holds few."""


def make_engine(
    url: str, *, lock_timeout_ms: int = 10_000, idle_in_transaction_ms: int = 120_000, **kwargs: Any
) -> Engine:
    """An engine for `url`, with SQLite tuned for one server plus CLI commands, and PostgreSQL
    sessions that never wait for a lock, nor sit in an open transaction, without end."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if path and path != ":memory:":  # a file: a QueuePool, sized as POOL_SIZE says
            kwargs = {"pool_size": POOL_SIZE, "max_overflow": 10} | kwargs
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkin", _sqlite_default_busy_timeout)
        return engine
    if url.startswith("postgresql"):
        options = (
            f"-c lock_timeout={int(lock_timeout_ms)}"
            f" -c idle_in_transaction_session_timeout={int(idle_in_transaction_ms)}"
        )
        kwargs.setdefault("connect_args", {"options": options})
    # No pool_pre_ping (a `SELECT 1` round trip before every transaction): `_ping_if_idle` checks only
    # a connection that sat in the pool longer than PING_AFTER_IDLE_SECONDS.
    engine = create_engine(url, **({"pool_size": POOL_SIZE // 2, "max_overflow": 10} | kwargs))
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkin", _checked_in)
        event.listen(engine, "checkout", _ping_if_idle)
    return engine


PING_AFTER_IDLE_SECONDS = 2.0
"""A pooled PostgreSQL connection idle longer than this is pinged before use; a busy one is not. A
database restart (or an idle connection killed by a firewall) is thus found before a request uses the
connection, as pool_pre_ping would, without a round trip per transaction under load."""
_CHECKED_IN_AT = "checked_in_at"


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    since = record.info.get(_CHECKED_IN_AT)
    if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
        return  # brand new, or back from a transaction a moment ago
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as error:  # a dead connection: the pool discards it and checks out another
        raise DisconnectionError(str(error)) from error


TRANSIENT_SQLSTATES = {
    "55P03": "lock_not_available",
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "57014": "query_canceled",
    "25P03": "idle_in_transaction_session_timeout",
}


def is_transient(error: BaseException) -> bool:
    """A database failure that a retry may cure: a lock or busy timeout, a serialisation failure."""
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    text = str(original).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def wait_longer_for_locks(session: Session, seconds: int) -> None:
    """Let this transaction wait up to `seconds` for locks (PostgreSQL's lock_timeout, SQLite's busy
    timeout until the connection goes back to the pool). For batch work (billing runs,
    finalizations) that queues behind another batch by design."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = {int(seconds) * 1000}"))
    else:
        connection = session.connection()
        connection.connection.info[_LONGER_WAIT] = True  # reset at checkin (_sqlite_default_busy_timeout)
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(seconds) * 1000}")


@dataclass
class Database:
    """An engine and its session factory: one per process, held by the app and the CLI."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = make_engine(
            settings.effective_database_url,
            lock_timeout_ms=settings.database_lock_timeout_ms,
            idle_in_transaction_ms=settings.database_idle_in_transaction_ms,
        )
        # The settings ride along with each session: the usage chain finds its key through them.
        return cls(
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False, info={"settings": settings}),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises.

        `write=True` for a transaction that may write: on SQLite it takes the writer lock (begin_write)
        when its transaction begins (the session's first use), before checking out a connection, and so
        does each later transaction of the session (after a `session.commit()` or `rollback()` in the
        block), except inside an asyncio task on an event loop's thread, where it never waits. A read (the
        default) stays deferred.
        Keep long work (a sandbox run, a call to Stripe, a product build) out of a write transaction."""
        session = self.sessions(info={WRITE: True}) if write else self.sessions()
        try:
            yield session
            with phases.phase("commit (any transaction)"):
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def settings_of(session: Session) -> Settings:
    """The settings of the database a session belongs to (set by `Database.from_settings`)."""
    from market.settings import get_settings

    found = session.info.get("settings")
    return found if isinstance(found, Settings) else get_settings()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(database: Database) -> None:
    """Apply every Alembic migration not yet applied (all heads)."""
    from alembic import command

    config = alembic_config(database.engine.url.render_as_string(hide_password=False))
    with database.engine.connect() as connection, _writer_lock(database.engine):
        if database.is_sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # a writer, queued in the kernel (begin_write)
        else:
            connection.begin()
        config.attributes["connection"] = connection
        # Migrations that need the settings (0004 re-keys the usage chain) get this database's own.
        config.attributes["settings"] = database.sessions.kw.get("info", {}).get("settings")
        command.upgrade(config, "heads")
        connection.commit()


@contextmanager
def _writer_lock(engine: Engine) -> Iterator[None]:
    """The SQLite writer lock (begin_write's `<file>.writer-lock`) for a block outside any session."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    fd = lock(Path(f"{database}.writer-lock")) if database and database != ":memory:" else None
    try:
        yield
    finally:
        release(fd)


def upsert_locked(
    session: Session, entity: Any, values: dict[str, Any], conflict_columns: list[str], touch: str
) -> Any:
    """The row of `entity` keyed by `conflict_columns`, created from `values` if missing, write-locked
    until commit, in ONE statement: `INSERT ... ON CONFLICT DO UPDATE SET touch = touch RETURNING *`.

    The no-op update takes the row lock on PostgreSQL (and the write lock on SQLite, which is already
    held when the transaction began with `begin_write`), and RETURNING gives the committed row's
    current values, loaded into the session's object (populate_existing).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(entity).values(**values)
    elif dialect == "sqlite":
        statement = sqlite.insert(entity).values(**values)
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect}")
    column = getattr(entity, touch)
    statement = statement.on_conflict_do_update(index_elements=conflict_columns, set_={touch: column})
    return session.scalars(statement.returning(entity), execution_options={"populate_existing": True}).one()


def upsert_locked_row(
    session: Session, table: Any, values: dict[str, Any], conflict_columns: list[str], touch: str, columns: list[Any]
) -> Any:
    """`upsert_locked` in Core: the same one statement (`INSERT ... ON CONFLICT DO UPDATE SET touch = touch
    RETURNING columns`), on the session's connection, returning the row's `columns` as a plain Row.

    No ORM object is built, loaded or tracked: for the metered path, where the caller writes the row
    back itself (metering.attempts.append)."""
    dialect = session.get_bind().dialect.name
    key = (table.name, dialect, tuple(conflict_columns), touch, tuple(c.key for c in columns))
    statement = _UPSERTS.get(key)
    if statement is None:
        if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - only the two supported databases
            raise RuntimeError(f"unsupported database {dialect}")
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = _UPSERTS[key] = (
            module.insert(table)
            .on_conflict_do_update(index_elements=conflict_columns, set_={touch: table.c[touch]})
            .returning(*columns)
        )
    connection = session.connection()
    if dialect == "sqlite":
        plain = _plain_sqlite(connection.dialect, statement, tuple(values))
        if plain is not None:
            sql, binds = plain
            parameters = tuple(values[name] if process is None else process(values[name]) for name, process in binds)
            return connection.exec_driver_sql(sql, parameters).one()
    return connection.execute(statement, values).one()


_UPSERTS: dict[tuple[Any, ...], Any] = {}
"""Built once per table, database and shape: their compiled SQL is then found in SQLAlchemy's cache at once."""

_PLAIN_SQLITE: weakref.WeakKeyDictionary[Dialect, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def _plain_sqlite(dialect: Dialect, statement: Any, keys: tuple[str, ...]) -> tuple[str, Any] | None:
    """An upsert of `upsert_locked_row` on SQLite as its SQL and its parameters' bind processors, compiled once per
    dialect and set of values, to send with `exec_driver_sql` (which still wraps database errors in DBAPIError
    and fires the engine's events) at about half the CPU of `execute` (branch lean13: it runs inside the writer
    lock on every query). None, and so `execute`, when a returned column's type converts what SQLite returns (a
    DateTime, say) or when SQLAlchemy would fill in a column the values leave out (a Python-side default)."""
    compiled_here = _PLAIN_SQLITE.get(dialect)
    if compiled_here is None:
        compiled_here = _PLAIN_SQLITE.setdefault(dialect, {})
    key = (id(statement), keys)
    if key not in compiled_here:
        returned = statement._returning
        if any(column.type._cached_result_processor(dialect, None) is not None for column in returned):
            compiled_here[key] = None
        else:
            compiled = statement.compile(dialect=dialect, column_keys=list(keys))
            processors = compiled._bind_processors
            names = compiled.positiontup or []
            if compiled.insert_prefetch or not set(names) <= set(keys):  # a default SQLAlchemy fills in: execute
                compiled_here[key] = None
            else:
                compiled_here[key] = (compiled.string, tuple((name, processors.get(name)) for name in names))
    found: tuple[str, Any] | None = compiled_here[key]
    return found


@dataclass(frozen=True)
class Upsert:
    """One `upsert_locked_row` to run with others (`upsert_locked_rows`)."""

    table: Any
    values: dict[str, Any]
    conflict_columns: list[str]
    touch: str
    columns: list[Any]


def upsert_locked_rows(session: Session, upserts: list[Upsert]) -> list[Any]:
    """`upsert_locked_row` for each of `upserts`, in order (so their locks are taken in that order).

    On PostgreSQL (psycopg) in ONE round trip: the transaction's BEGIN and every upsert are sent as
    one pipeline (psycopg's pipeline mode) and their rows read when it is synced, instead of one
    round trip for BEGIN and one per statement. Elsewhere, one after the other."""
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg" or len(upserts) < 2:
        return [upsert_locked_row(session, u.table, u.values, u.conflict_columns, u.touch, u.columns) for u in upserts]
    import psycopg

    compiled = [_compiled_upsert(dialect, u) for u in upserts]
    raw: Any = connection.connection.driver_connection
    cursors = []
    sql, parameters = "", {}
    try:
        with raw.pipeline():
            for (sql, names), upsert in zip(compiled, upserts, strict=True):
                parameters = {name: upsert.values[name] for name in names}
                cursor = raw.cursor()
                # Listeners of the engine's statements (logging, tests' statement counts) see these too.
                connection.dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, False)
                cursor.execute(sql, parameters)
                cursors.append(cursor)
        rows = [cursor.fetchone() for cursor in cursors]
    except psycopg.Error as error:  # as SQLAlchemy would raise it (market.db.is_transient reads it)
        raise DBAPIError.instance(sql, parameters, error, psycopg.Error) from error
    finally:
        for cursor in cursors:
            cursor.close()
    return rows


def upsert_locked_rows_by_table(session: Session, upserts: list[Upsert]) -> list[Any]:
    """`upsert_locked_rows(session, upserts)` (same rows, same order of locks), with each run of consecutive
    upserts of one table and shape as ONE multi-row statement (`INSERT ... VALUES (...), (...) ON CONFLICT
    DO UPDATE ... RETURNING`), on PostgreSQL (psycopg), the transaction's BEGIN and every statement in one
    round trip (branch pg-dash: a group commit batch locks its members' rows with two statements instead of
    two per member). PostgreSQL inserts a VALUES list row after row, so the locks are taken in the list's
    order; the keys must be distinct within a run (a statement cannot update a row twice). Elsewhere:
    `upsert_locked_rows`."""
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg" or len(upserts) < 2:
        return upsert_locked_rows(session, upserts)
    import psycopg

    runs: list[list[Upsert]] = []
    for u in upserts:
        if runs and _shape(runs[-1][0]) == _shape(u):
            runs[-1].append(u)
        else:
            runs.append([u])
    raw: Any = connection.connection.driver_connection
    cursors = []
    sql, parameters = "", {}
    try:
        with raw.pipeline():
            for run in runs:
                head, group, tail, names = _compiled_upserts(dialect, run[0])
                groups = [_PARAMETER.sub(rf"%(\1__{i})s", group) for i in range(len(run))]
                sql = head + ", ".join(groups) + tail
                parameters = {f"{name}__{i}": u.values[name] for i, u in enumerate(run) for name in names}
                cursor = raw.cursor()
                connection.dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, False)
                cursor.execute(sql, parameters)
                cursors.append((cursor, run))
        rows: list[Any] = []
        for cursor, run in cursors:
            width = len(run[0].conflict_columns)
            found = {tuple(str(v) for v in row[:width]): tuple(row[width:]) for row in cursor.fetchall()}
            rows.extend(found[tuple(str(u.values[c]) for c in u.conflict_columns)] for u in run)
    except psycopg.Error as error:  # as SQLAlchemy would raise it (market.db.is_transient reads it)
        raise DBAPIError.instance(sql, parameters, error, psycopg.Error) from error
    finally:
        for cursor, _ in cursors:
            cursor.close()
    return rows


def _shape(u: Upsert) -> tuple[Any, ...]:
    return (u.table.name, tuple(u.conflict_columns), u.touch, tuple(c.key for c in u.columns), tuple(u.values))


_PARAMETER = re.compile(r"%\((\w+)\)s")
_MULTI_ROW: dict[tuple[Any, ...], tuple[str, str, str, list[str]]] = {}


def _compiled_upserts(dialect: Dialect, u: Upsert) -> tuple[str, str, str, list[str]]:
    """`u`'s upsert returning its conflict key's columns, then `u.columns`, compiled once, split around its
    VALUES group: (the text before the group, the group, the text after, the group's parameter names)."""
    key = _shape(u)
    found = _MULTI_ROW.get(key)
    if found is None:
        table = u.table
        statement = (
            postgresql.insert(table)
            .on_conflict_do_update(index_elements=u.conflict_columns, set_={u.touch: table.c[u.touch]})
            .returning(*(table.c[c] for c in u.conflict_columns), *u.columns)
        )
        compiled = statement.compile(dialect=dialect, column_keys=list(u.values))
        text = compiled.string
        start = text.index(" VALUES (") + len(" VALUES ")
        end = text.index(") ON CONFLICT", start) + 1
        found = _MULTI_ROW[key] = (text[:start], text[start:end], text[end:], list(compiled.params))
    return found


_PIPELINED: dict[tuple[Any, ...], tuple[str, list[str]]] = {}


def _compiled_upsert(dialect: Dialect, u: Upsert) -> tuple[str, list[str]]:
    key = (u.table.name, tuple(u.conflict_columns), u.touch, tuple(c.key for c in u.columns), tuple(u.values))
    found = _PIPELINED.get(key)
    if found is None:
        statement = (
            postgresql.insert(u.table)
            .on_conflict_do_update(index_elements=u.conflict_columns, set_={u.touch: u.table.c[u.touch]})
            .returning(*u.columns)
        )
        compiled = statement.compile(dialect=dialect, column_keys=list(u.values))
        found = _PIPELINED[key] = (compiled.string, list(compiled.params))
    return found


def begin_write(session: Session) -> None:
    """On SQLite, start the session's transaction by taking the database's write lock (BEGIN IMMEDIATE).

    A transaction that reads and then writes would otherwise start as a reader and upgrade later; under
    WAL an upgrade that meets a newer commit fails at once (SQLITE_BUSY_SNAPSHOT) and is retried, and
    writers queue in SQLite's sleeping busy handler. Taking the lock first means one wait, at the start,
    before anything is read. Writers first queue on a machine-wide file lock next to the database
    (`<file>.writer-lock`, market.locks.lock), so they wait for each other in the kernel and never
    sleep-and-retry; the lock is taken before a pooled connection is checked out, so a waiting writer
    holds no connection. On PostgreSQL row locks do the work: nothing to do. Call it first thing.

    Every writer of the marketplace comes through here (branch busy-writers): the query path's
    transactions call it; a session opened with `Database.transaction(write=True)` takes the lock when each
    of its transactions begins and sends BEGIN IMMEDIATE on the connection it checks out (market.db.WRITE),
    which is what the API's and the console's mutating requests
    (market.deps.get_session, market.console.web.get_console: POST, PUT, PATCH, DELETE), the CLI's
    writing commands, the scheduler's jobs, the upload and build pipeline and the Stripe webhook use.
    SQLite's busy handler (SQLITE_BUSY_TIMEOUT_MS) is then only a safety net: no writer waits in it for
    another writer, only for a checkpoint or a process outside the marketplace. tests/conftest.py
    (`sqlite_writes_begin_immediate`) fails any test in which the app wrote outside BEGIN IMMEDIATE.

    Code that already holds the lock through another session cannot wait for it again (it would wait for
    itself): that raises NestedWriter at once.
    """
    if session.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL: row locks do the work
    _take_writer_lock(session)  # a file's lock (an in-memory database has none)
    try:
        connection = session.connection()  # from here on the transaction's end releases the lock
    except BaseException:
        _release(session)
        raise
    if not session.info.get(_BEGUN):  # a writer session's transaction began with it already (_begin)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        session.info[_BEGUN] = True


def begin_write_now(session: Session) -> None:
    """Take the writer lock in the middle of a session's transaction that has only read so far: for the one
    write at the end of a long operation (a product build) that must not hold the lock while it works.

    On SQLite nothing is upgraded: pysqlite runs reads outside any SQLite transaction, so the transaction
    begins here, with BEGIN IMMEDIATE, after the kernel queue (waiting there, unlike begin_write, with the
    session's connection checked out). What was read before may have changed: the write must be checked by
    a constraint (a version's unique number) or by reading again. On PostgreSQL: nothing to do."""
    if _sqlite_file(session) is None or session.info.get(_BEGUN):
        return
    connection = session.connection()
    if connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        raise RuntimeError("begin_write_now after a write: the transaction is already a deferred writer")
    _take_writer_lock(session)
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    session.info[_BEGUN] = True


class NestedWriter(RuntimeError):
    """A write transaction opened by a thread that holds the writer lock in another session (a deadlock)."""


WRITE = "market_write"
"""Session.info key: the session's transactions write (Database.transaction(write=True)). Such a session takes
the SQLite writer lock when each of its transactions begins (its first use after it was opened, committed or
rolled back: before any connection is checked out; _lock_first) and sends BEGIN IMMEDIATE on the connection it
then checks out (_begin). So a request that streams a body first, or is refused before touching the database,
never waits for the lock. Any sessionmaker's sessions: the listeners are on Session."""


def _sqlite_file(session: Session) -> str | None:
    """The SQLite database file the session writes to, or None (PostgreSQL, or SQLite in memory)."""
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    database = bind.engine.url.database
    return database if database and database != ":memory:" else None


def _take_writer_lock(session: Session) -> None:
    """Queue for `<db>.writer-lock` in the kernel, unless this session's transaction holds it already."""
    database = _sqlite_file(session)
    if database is None or _WRITER_FD in session.info:
        return
    if database in _HELD_HERE.get():
        raise NestedWriter(f"this code already holds the writer lock of {database} in another session")
    # Writers queue in the kernel (a blocking flock, woken the moment the holder commits), not in SQLite's
    # busy handler, which sleeps and retries (up to 100 ms a turn). Released when the transaction ends
    # (_release_writer), commit or rollback. Taken before a pooled connection is checked out: a writer
    # waiting in the queue holds no connection.
    with phases.phase("sqlite writer lock wait (in 6)"):
        session.info[_WRITER_FD] = lock(Path(f"{database}.writer-lock"))
    _HELD_HERE.set(_HELD_HERE.get() | {database})
    session.info[_WRITER_HOLDER] = database
    if phases.ENABLED:
        session.info[_WRITER_TAKEN] = time.perf_counter()


@event.listens_for(Session, "after_transaction_create")
def _lock_first(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and session.info.get(WRITE) and not _on_event_loop():
        _take_writer_lock(session)


def _on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop: a writer session never waits for the lock there (it
    would stall every request of the process). An async route's session began in its dependency, in the
    threadpool; a transaction it starts again on the loop (a page drawn after a rollback) stays a reader."""
    try:
        # A task, not merely a loop: a greenlet-based sync wrapper (Playwright's sync API, in the browser tests)
        # leaves its suspended loop "running" in this thread while ordinary sync code runs outside any task.
        return asyncio.current_task() is not None
    except RuntimeError:  # no running loop
        return False


@event.listens_for(Session, "after_begin")
def _begin(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    if (
        transaction.parent is None
        and session.info.get(WRITE)
        and _WRITER_FD in session.info
        and not session.info.get(_BEGUN)
    ):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        session.info[_BEGUN] = True


_HELD_HERE: ContextVar[frozenset[str]] = ContextVar("market_writer_locks_held", default=frozenset())
"""The database files whose writer lock the running code took (a context variable: a thread of its own, or one
call of a request's code in the threadpool, which runs in a copy of the request's context)."""


def _release(session: Session) -> None:
    session.info.pop(_BEGUN, None)
    release(session.info.pop(_WRITER_FD, None))
    database = session.info.pop(_WRITER_HOLDER, None)
    held = _HELD_HERE.get()
    if database in held:  # released where it was taken (else that context has ended: nothing to forget)
        _HELD_HERE.set(held - {database})


_WRITER_FD = "sqlite_writer_fd"
_WRITER_TAKEN = "sqlite_writer_taken"
_WRITER_HOLDER = "sqlite_writer_holder"
_BEGUN = "sqlite_begun_immediate"


@event.listens_for(Session, "after_transaction_end")
def _release_writer(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        _release(session)
        taken = session.info.pop(_WRITER_TAKEN, None)
        if taken is not None:
            phases.add("sqlite writer lock held (in 6)", time.perf_counter() - taken)


def insert_ignore(session: Session, table: Any, values: dict[str, Any], conflict_columns: list[str]) -> None:
    """INSERT a row unless one with the same `conflict_columns` exists, atomically, on SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = (
            postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
        )
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect}")
    session.execute(statement)


from market import access_cache as _access_cache  # noqa: E402, F401  (its session listeners invalidate the caches)
