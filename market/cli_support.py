"""What every `market` command shares: where the marketplace is, its output streams, user errors.

- The data directory comes from MARKET_DATA_DIR, else from the configuration file (MARKET_CONFIG, default
  ~/.config/market/config.toml, `data_dir = "..."`), else the command stops and says how to set it. It is
  never guessed from the current directory.
- Only `market init` and `market demo` create a marketplace; every other command refuses an empty one.
- Results go to stdout (text, or one JSON document with --json); progress and diagnostics to stderr.
- A user's mistake (a bad period, a missing or unwritable file, an unreachable server) is one line on
  stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from market.db import Database, migrate
from market.errors import MarketError
from market.settings import Settings, get_settings

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True)
"""Results: stdout."""
err = Console(stderr=True, soft_wrap=True)
"""Progress and diagnostics: stderr."""

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]


def config_path() -> Path:
    """The configuration file: MARKET_CONFIG, or $XDG_CONFIG_HOME/market/config.toml (~/.config by default)."""
    if explicit := os.environ.get("MARKET_CONFIG"):
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "market" / "config.toml"


def cli_settings() -> Settings:
    """Settings for a command: the data directory from MARKET_DATA_DIR or the config file, or an error."""
    if os.environ.get("MARKET_DATA_DIR"):
        return get_settings()
    path = config_path()
    if not path.is_file():
        raise MarketError("no_data_dir", config=str(path))
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise MarketError("invalid_config", config=str(path), detail=str(error)) from error
    data_dir = config.get("data_dir")
    if not isinstance(data_dir, str) or not data_dir:
        raise MarketError("no_data_dir", config=str(path))
    # A relative path in the file is relative to the file, never to wherever the command runs.
    overrides: dict[str, Any] = {"data_dir": (path.parent / Path(data_dir).expanduser()).resolve()}
    if isinstance(config.get("database_url"), str) and not os.environ.get("MARKET_DATABASE_URL"):
        overrides["database_url"] = config["database_url"]
    return Settings(**overrides)


def _initialised(settings: Settings, database: Database) -> bool:
    if settings.database_url is None and not (settings.data_dir / "market.db").is_file():
        return False  # checked before connecting: SQLite would create an empty file
    return inspect(database.engine).has_table("alembic_version")


def open_database(*, create: bool = False) -> Database:
    """The marketplace's database, migrated to the latest schema. Without `create`, an empty or missing
    marketplace is an error that says how to make one (`market init` or `market demo`)."""
    settings = cli_settings()
    if not create and not settings.data_dir.is_dir():
        raise MarketError("no_marketplace", data_dir=str(settings.data_dir))
    if create:
        settings.ensure_dirs()
    database = Database.from_settings(settings)
    if not create and not _initialised(settings, database):
        database.dispose()
        raise MarketError("no_marketplace", data_dir=str(settings.data_dir))
    migrate(database)
    return database


@contextlib.contextmanager
def transaction(*, write: bool = True) -> Iterator[Session]:
    """One transaction on the marketplace's database (open_database), committed at the end; then it is closed.

    A writer unless `write=False` (a command that only reads): on SQLite it takes the writer lock first
    (market.db.begin_write), queued in the kernel behind the server's writers, never in SQLite's busy handler."""
    database = open_database()
    try:
        with database.transaction(write=write) as session:
            yield session
    finally:
        database.dispose()


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a user's mistake into one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MarketError as error:
            err.print(f"[red]{error.code}[/red]: {error.message}", highlight=False)
        except OSError as error:
            what = f" '{error.filename}'" if error.filename else ""
            err.print(f"[red]error[/red]:{what} {error.strerror or error}", highlight=False)
        raise typer.Exit(1)

    return wrapper


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print a command's result on stdout: `text` for people, or `data` as JSON with --json."""
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        out.print(text, highlight=False)


def write_output(path: Path, content: bytes) -> None:
    """Write a file the user asked for; an unwritable path is a user error, not a traceback."""
    try:
        path.write_bytes(content)
    except OSError as error:
        raise MarketError("cannot_write", path=str(path), detail=error.strerror or str(error)) from error
