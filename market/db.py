"""The database: declarative base, portable column types, engines, sessions and migrations.

The schema is portable between SQLite (the embedded default) and PostgreSQL (production).
Migrations are Alembic's, applied with `migrate()` by `market serve`, `market demo` and the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

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
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, with SQLite tuned for one server plus CLI commands."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


@dataclass
class Database:
    """An engine and its session factory: one per process, held by the app and the CLI."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = make_engine(settings.effective_database_url)
        # The settings ride along with each session: the usage chain finds its key through them.
        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False, info={"settings": settings}))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises."""
        session = self.sessions()
        try:
            yield session
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
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        # Migrations that need the settings (0004 re-keys the usage chain) get this database's own.
        config.attributes["settings"] = database.sessions.kw.get("info", {}).get("settings")
        command.upgrade(config, "heads")


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
