"""The `market` command as a user meets it: where the marketplace is, what goes to stdout and stderr,
user errors without tracebacks, and --version."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from market.cli import app
from market.settings import get_settings
from tests.conftest import Market


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No MARKET_DATA_DIR, no database URL, a config location with nothing in it, and an unrelated cwd."""
    for name in ("MARKET_DATA_DIR", "MARKET_DATABASE_URL", "MARKET_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _run(*args: str) -> object:
    get_settings.cache_clear()
    return CliRunner().invoke(app, list(args))


def test_without_a_data_directory_every_command_says_how_to_set_it(clean_env: Path) -> None:
    for args in (["usage", "verify"], ["billing", "run", "--period", "2026-01"], ["migrate"], ["init"]):
        result = _run(*args)
        assert result.exit_code == 1, args
        assert "no_data_dir" in result.stderr and "MARKET_DATA_DIR" in result.stderr, args
        assert result.stdout == "" and "Traceback" not in result.output, args
    assert list((clean_env / "elsewhere").iterdir()) == []  # nothing created where the command ran


def test_an_empty_directory_is_never_made_a_marketplace_silently(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = clean_env / "data"
    monkeypatch.setenv("MARKET_DATA_DIR", str(data))
    for args in (
        ["usage", "verify"],
        ["billing", "run", "--period", "2026-01"],
        ["billing", "close", "--period", "2026-01"],
    ):
        result = _run(*args)
        assert result.exit_code == 1 and "no_marketplace" in result.stderr, args
        assert "market init" in result.stderr and not data.exists(), args
    data.mkdir()
    refused = _run("usage", "verify")
    assert refused.exit_code == 1 and "no_marketplace" in refused.stderr
    assert list(data.iterdir()) == []  # not even an empty SQLite file
    created = _run("init", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout) == {"data_dir": str(data)}
    verified = _run("usage", "verify")
    assert verified.exit_code == 0 and verified.stdout.startswith("ok: 0 usage records"), verified.output


def test_the_config_file_finds_the_marketplace_from_any_directory(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "config-home" / "market" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('data_dir = "../../var"\n')  # relative to the file, not to the cwd
    assert _run("init").exit_code == 0
    assert (clean_env / "var" / "market.db").is_file()
    monkeypatch.chdir(clean_env)
    result = _run("usage", "verify", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True
    config.write_text("data_dir = [")
    broken = _run("usage", "verify")
    assert broken.exit_code == 1 and "invalid_config" in broken.stderr


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("market ") and result.stdout.strip() != "market"


def test_help_shows_readable_metavars() -> None:
    for args in (["billing", "reconcile", "--help"], ["products", "build", "--help"], ["demo", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout and "<path>" not in result.stdout and "<file>" not in result.stdout
    assert "--period YYYY-MM" in CliRunner().invoke(app, ["billing", "run", "--help"]).stdout
    assert "--policy FILE" in CliRunner().invoke(app, ["products", "build", "--help"]).stdout


@pytest.fixture
def cli_market(market: Market, monkeypatch: pytest.MonkeyPatch) -> Iterator[Market]:
    monkeypatch.setenv("MARKET_DATABASE_URL", market.settings.effective_database_url)
    monkeypatch.setenv("MARKET_DATA_DIR", str(market.settings.data_dir))
    get_settings.cache_clear()
    yield market
    get_settings.cache_clear()


def test_results_go_to_stdout_and_user_errors_are_one_line(cli_market: Market, tmp_path: Path) -> None:
    verified = _run("usage", "verify")
    assert verified.exit_code == 0 and verified.stdout.startswith("ok: ") and verified.stderr == ""
    bad = _run("billing", "run", "--period", "2026-13")
    assert bad.exit_code == 1 and bad.stdout == "" and bad.stderr.count("\n") == 1
    unwritable = tmp_path / "no-such-dir" / "recon.csv"
    result = _run("billing", "reconcile", "--period", "2020-01", "--csv", str(unwritable))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot_write" in result.stderr and str(unwritable) in result.stderr
    closed = _run("billing", "close", "--period", "2020-01", "--json")
    assert closed.exit_code == 0 and json.loads(closed.stdout) == {"period": "2020-01", "status": "closed"}
    assert os.path.exists(cli_market.settings.data_dir)


def test_demo_has_last_months_usage_once_and_bills_it(cli_market: Market, tmp_path: Path) -> None:
    """`market demo` dates a new demo back a month, with its buyers' queries of the 15th, so a finished
    period can be billed; run again, it records no second copy of that history."""
    from market.demo_history import HISTORY_BUYERS, HISTORY_QUERIES, previous_month_start

    keys = tmp_path / "keys.json"
    first = _run("demo", "--keys-out", str(keys), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["history"] == len(HISTORY_BUYERS) * len(HISTORY_QUERIES)
    again = _run("demo", "--keys-out", str(keys), "--json")
    assert again.exit_code == 0, again.output
    period = previous_month_start().strftime("%Y-%m")
    billed = _run("billing", "run", "--period", period, "--json")
    assert billed.exit_code == 0, billed.output
    summary = json.loads(billed.stdout)
    assert summary["invoices_created"] == len(HISTORY_BUYERS)
    assert summary["usage_linked"] == len(HISTORY_BUYERS) * len(HISTORY_QUERIES)
    commercial = {"Authorization": f"Bearer {json.loads(keys.read_text())['buyer_commercial']}"}
    agreements = cli_market.client.get("/v1/agreements", headers=commercial).json()["items"]
    assert agreements and all(a["valid_from"] < f"{period}-02" for a in agreements)
