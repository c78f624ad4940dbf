"""Tests that never touch the market database, run in one of CI's two suites only (branch ci-fast).

CI runs the suite twice, on SQLite and on PostgreSQL (.ci/run). The two runs differ in one thing only,
the environment variable MARKET_DATABASE_URL: a test whose behaviour cannot depend on it gives the same
verdict in both, and the second run is wasted work (the sandbox's property tests run DuckDB in-process and
are most of the suite's CPU time). Such tests are marked `db_independent` at collection, by a rule derived
from the test itself, never from a hand-kept list:

1. its fixture closure (every fixture it requests, directly or through other fixtures, autouse ones
   included) does not contain `database_factory`, the root of every database fixture in tests/conftest.py
   (`market`, `demo_market`, `demo_templates`, `running_market(database_factory, ...)`); and
2. neither its module, nor the modules of the fixtures it uses, nor the `tests.*` modules those import
   (transitively) name the database's configuration or open a database themselves: no `MARKET_DATABASE_URL`,
   `database_url`, `BASE_URL`, `ON_POSTGRES`, `create_engine`, no fixture requested at run time
   (`request.getfixturevalue`, which the closure does not show), and no import of what opens a database:
   `market.db`, `market.settings` (`Settings()` reads the URL), `market.app`, `market.cli`, `market.demo`,
   `tests.served`, `sqlalchemy.create_engine`/`sqlalchemy.engine`, `alembic`, `psycopg` (anywhere in the
   file, inside functions too). Importing models or `sqlalchemy.text` is not opening a database: a session
   comes only from a `Market` (rule 1) or a `Database` (this rule). tests/conftest.py is not read: it holds
   the URL, and everything in it that reads it is reached through `database_factory` (rule 1); nor is this
   file, which names the URL to replace it.

A test that satisfies both yet reaches the database some other way (a subprocess that runs `market`, a
library function that reads `Settings()`) is caught when it runs: every `db_independent` test runs with
MARKET_DATABASE_URL set to a URL no driver accepts (`_POISON`), so anything that would connect to the
market database fails loudly rather than passing on SQLite in place of PostgreSQL.

`pytest --db-independent=deselect` leaves them out; `--db-independent=only` runs them alone. The default, `run`,
runs everything (a plain `make test` on either database).

CI's two suites share them out (tidy16): the PostgreSQL suite runs those of its share
(`--db-independent=postgresql-share`), the SQLite suite all the others (`--db-independent=sqlite-share`), so
that each runs once and the two suites, side by side on two cores, end together. The share is a list of
files and folders, pyproject.toml's `db_independent_postgresql_share`, chosen from measured times
(docs/benchmarks.md "tidy16"); a stale entry (one that no longer names a file with a database-independent
test) fails the collection, and only marked tests are ever moved: both suites still run every test that may
touch a database.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path

import pytest

MARKER = "db_independent"
ROOT_FIXTURE = "database_factory"
_POISON = "db_independent_test_must_not_touch_the_market_database://"
"""A URL SQLAlchemy parses but cannot load a driver for: the error names it."""
_WORDS = ("MARKET_DATABASE_URL", "database_url", "BASE_URL", "ON_POSTGRES", "create_engine", "getfixturevalue")
"""The database's configuration, an engine made by hand, a fixture requested at run time (not in the closure)."""
_DATABASE_MODULES = (
    "market.db",
    "market.settings",
    "market.app",
    "market.cli",
    "market.demo",
    "tests.served",
    "sqlalchemy.create_engine",
    "sqlalchemy.engine",
    "sqlalchemy.ext.asyncio",
    "alembic",
    "psycopg",
    "psycopg2",
)
_TESTS_DIR = Path(__file__).resolve().parent
SHARE_INI = "db_independent_postgresql_share"
_NOT_READ = (_TESTS_DIR / "conftest.py", Path(__file__).resolve())
"""tests/conftest.py holds the URL (read only through database_factory); this file names it to poison it."""


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Every module a file imports, anywhere in it (`from x import y` gives x and x.y)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _package(path: Path) -> str:
    """The package of the module at `path` (for relative imports); "" outside the repository."""
    if _TESTS_DIR.parent not in path.parents:
        return ""
    return ".".join(path.relative_to(_TESTS_DIR.parent).parent.parts)


@functools.cache
def database_reasons(path: Path) -> tuple[str, ...]:
    """Why the module at `path` (or a tests.* module it imports) may touch the market database; () if not."""
    return tuple(_reasons(path.resolve(), set()))


def _reasons(path: Path, seen: set[Path]) -> list[str]:
    if path in seen or path in _NOT_READ or not path.is_file():
        return []
    seen.add(path)
    source = path.read_text(encoding="utf-8")
    name = path.name
    found = [f"{name} names {word}" for word in _WORDS if word in source]
    modules = _imports(ast.parse(source), _package(path))
    found += [
        f"{name} imports {module}"
        for module in sorted(modules)
        if any(module == db or module.startswith(db + ".") for db in _DATABASE_MODULES)
    ]
    for module in sorted(modules):
        if module.split(".")[0] == "tests":
            base = _TESTS_DIR.parent.joinpath(*module.split("."))
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                found += _reasons(candidate, seen)
    return found


def _fixture_modules(item: pytest.Item) -> Iterable[Path]:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    paths = []
    for definitions in info.name2fixturedefs.values():
        for definition in definitions:
            code = getattr(definition.func, "__code__", None)
            if code is not None:
                paths.append(Path(code.co_filename))
    return paths


def reasons_for(item: pytest.Item) -> list[str]:
    """Why `item` may touch the market database; empty: it is database-independent."""
    if ROOT_FIXTURE in getattr(item, "fixturenames", ()):
        return [f"requests {ROOT_FIXTURE}"]
    if not isinstance(item, pytest.Function):
        return ["not a Python test function"]
    found = list(database_reasons(Path(str(item.path))))
    for path in _fixture_modules(item):
        if _TESTS_DIR in path.resolve().parents:
            found += database_reasons(path)
    return found


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-independent",
        choices=("run", "deselect", "only", "sqlite-share", "postgresql-share"),
        default="run",
        help="tests that never touch the market database (tests/db_independent.py): run them (default), "
        "deselect them, run only them, or run the share of them that CI's SQLite or PostgreSQL suite runs "
        "(with every other test)",
    )
    parser.addini(
        SHARE_INI,
        type="paths",
        default=[],
        help="database-independent tests (files or folders) that CI's PostgreSQL suite runs rather than its "
        "SQLite suite (tests/db_independent.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: never touches the market database (set at collection, tests/db_independent.py)"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not reasons_for(item):
            item.add_marker(MARKER)
    mode = config.getoption("--db-independent")
    if mode == "run":
        return
    keep = [item for item in items if _kept(item, mode)]
    dropped = [item for item in items if item not in set(keep)]
    # Each suite must still run every test that may touch a database.
    touching = [item.nodeid for item in dropped if mode != "only" and reasons_for(item)]
    assert not touching, f"would deselect tests that may touch the database: {touching[:5]}"
    if mode.endswith("-share"):
        _check_share(config, items)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def _share(config: pytest.Config) -> list[Path]:
    return [Path(path).resolve() for path in config.getini(SHARE_INI)]


def in_postgresql_share(item: pytest.Item) -> bool:
    """Whether `item`'s file is, or lies in, an entry of the PostgreSQL suite's share."""
    path = Path(str(item.path)).resolve()
    return any(path == entry or entry in path.parents for entry in _share(item.config))


def _kept(item: pytest.Item, mode: str) -> bool:
    independent = item.get_closest_marker(MARKER) is not None
    if mode == "deselect":
        return not independent
    if mode == "only":
        return independent
    if not independent:
        return True
    return in_postgresql_share(item) == (mode == "postgresql-share")


def _check_share(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every entry of the share exists, and names a database-independent test wherever its files were
    collected: a stale entry (a file renamed, or whose tests now touch the database) fails the collection
    rather than silently moving nothing."""
    collected = {Path(str(item.path)).resolve() for item in items}
    moved = {
        Path(str(item.path)).resolve()
        for item in items
        if item.get_closest_marker(MARKER) is not None and in_postgresql_share(item)
    }
    for entry in _share(config):
        assert entry.exists(), f"{SHARE_INI}: {entry} does not exist"
        named = {path for path in collected if path == entry or entry in path.parents}
        assert not named or named & moved, f"{SHARE_INI}: {entry} has no database-independent test"


@pytest.fixture(autouse=True)
def _db_independent_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database-independent test runs with an unusable database URL: touching the database fails it."""
    if request.node.get_closest_marker(MARKER) is not None:
        monkeypatch.setenv("MARKET_DATABASE_URL", _POISON)
