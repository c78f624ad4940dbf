"""The `db_independent` marker (tests/db_independent.py): which tests CI's PostgreSQL suite may leave out.

A test is left out of the PostgreSQL suite only when it cannot touch the market database: these tests check
that a test requesting a database fixture, or opening a database itself, is never marked, and that a marked
test that reaches the database anyway fails rather than passing on the wrong database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.db_independent import database_reasons

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
import pytest

from tests.db_independent import (  # the hooks and the guard, as tests/conftest.py takes them
    _db_independent_guard,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
)


@pytest.fixture(scope="session")
def database_factory():
    return object()


@pytest.fixture
def market(database_factory):
    return database_factory


@pytest.fixture
def seeded(market):  # a fixture on a database fixture
    return market
"""

TESTS = {
    "test_pure.py": """
        import os

        def test_arithmetic():
            assert 1 + 1 == 2

        def test_sees_the_unusable_url():
            name = "_".join(["MARKET", "DATABASE", "URL"])  # spelt out, the rule would see it
            assert os.environ[name].startswith("db_independent_test_must_not_touch")
        """,
    "test_fixtures.py": """
        def test_requests_market(market):
            pass

        def test_requests_a_fixture_that_requests_market(seeded):
            pass
        """,
    "test_opens_a_database.py": """
        def test_imports_inside_the_function(tmp_path):
            from market.db import Database
            from market.settings import Settings

            Database.from_settings(Settings(data_dir=tmp_path))
        """,
    "test_asks_at_run_time.py": """
        def test_requests_market_by_name(request):
            request.getfixturevalue("market")
        """,
    "test_names_the_url.py": """
        import os

        def test_reads_the_url():
            assert os.environ.get("MARKET_DATABASE_URL") is not None or True
        """,
    "test_sneaks_in.py": """
        import importlib

        def test_opens_the_configured_database_by_a_route_no_rule_sees(tmp_path):
            db = importlib.import_module("market" + ".db")
            config = importlib.import_module("market" + ".settings")
            with db.Database.from_settings(config.Settings(data_dir=tmp_path)).engine.connect():
                pass
        """,
}


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # none of the suite's plugins is needed: a quick start
    }
    environment.pop("MARKET_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ids(output: str, prefix: str) -> set[str]:
    return {line.split()[1] for line in output.splitlines() if line.startswith(prefix + " ")}


def test_only_tests_that_cannot_reach_the_database_are_left_out_and_a_stray_one_fails(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name, source in TESTS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))

    kept = _pytest(tmp_path, "--db-independent=deselect", "--collect-only")
    assert set(kept.stdout.split()) >= {
        "test_fixtures.py::test_requests_market",
        "test_fixtures.py::test_requests_a_fixture_that_requests_market",
        "test_opens_a_database.py::test_imports_inside_the_function",
        "test_names_the_url.py::test_reads_the_url",
        "test_asks_at_run_time.py::test_requests_market_by_name",
    }, kept.stdout + kept.stderr
    assert "test_pure.py::test_arithmetic" not in kept.stdout
    assert "3 deselected" in kept.stdout, kept.stdout

    alone = _pytest(tmp_path, "--db-independent=only")
    assert _ids(alone.stdout, "PASSED") == {"test_pure.py::test_arithmetic", "test_pure.py::test_sees_the_unusable_url"}
    # No rule sees the disguised import: the unusable URL makes it fail instead of passing on SQLite.
    assert _ids(alone.stdout, "FAILED") == {
        "test_sneaks_in.py::test_opens_the_configured_database_by_a_route_no_rule_sees"
    }, alone.stdout
    assert "db_independent_test_must_not_touch_the_market_database" in alone.stdout


def test_the_suites_helpers_are_read_through_their_imports() -> None:
    tests = ROOT / "tests"
    # Opens a database itself (imports inside a test function): may touch it.
    assert "test_group_commit_http.py imports market.db" in database_reasons(
        tests / "metering" / "test_group_commit_http.py"
    )
    # Through a module of the suite it imports: tests.metering.test_concurrency_http reads ON_POSTGRES.
    assert "test_concurrency_http.py names ON_POSTGRES" in database_reasons(tests / "metering" / "test_privacy_http.py")
    # The sandbox's corpus and its helpers (tests.factories, tests.sandbox.conftest) open none.
    assert database_reasons(tests / "sandbox" / "test_policy_corpus.py") == ()
    assert database_reasons(tests / "sandbox" / "conftest.py") == ()


def _collected(directory: Path, *args: str) -> set[str]:
    run = _pytest(directory, "--collect-only", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    return {line for line in run.stdout.split() if "::" in line}


def test_the_two_suites_shares_run_each_independent_test_once_and_every_other_test_in_both(tmp_path: Path) -> None:
    """CI's shares (`--db-independent=sqlite-share` and `postgresql-share`): every test that may touch the
    database in both suites, every database-independent one in exactly one, the share's in the PostgreSQL
    suite; a share entry that names no database-independent test fails the collection."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name, source in TESTS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "test_moved.py").write_text("def test_moved():\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\ndb_independent_postgresql_share =\n    moved\n")

    everything = _collected(tmp_path)
    independent = _collected(tmp_path, "--db-independent=only")
    sqlite = _collected(tmp_path, "--db-independent=sqlite-share")
    postgresql = _collected(tmp_path, "--db-independent=postgresql-share")
    assert "moved/test_moved.py::test_moved" in independent
    assert sqlite & postgresql == everything - independent != set()
    assert sqlite | postgresql == everything
    assert postgresql & independent == {"moved/test_moved.py::test_moved"}

    (tmp_path / "pytest.ini").write_text("[pytest]\ndb_independent_postgresql_share =\n    test_fixtures.py\n")
    stale = _pytest(tmp_path, "--collect-only", "--db-independent=postgresql-share")
    assert stale.returncode != 0
    assert "test_fixtures.py has no database-independent test" in stale.stdout + stale.stderr
