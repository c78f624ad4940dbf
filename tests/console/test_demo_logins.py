"""`market demo --logins-out` writes a web sign-in per demo role, and each one signs in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from market.cli import app
from market.settings import get_settings
from tests.conftest import Market
from tests.console.helpers import browser, csrf_of

ROLES = {"regulator", "operator", "source", "buyer_public", "buyer_commercial", "finance", "admin"}


def test_demo_writes_logins_that_sign_in(market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKET_DATA_DIR", str(market.settings.data_dir))
    monkeypatch.setenv("MARKET_DATABASE_URL", market.settings.effective_database_url)
    get_settings.cache_clear()
    try:
        keys, logins = tmp_path / "keys.json", tmp_path / "logins.json"
        result = CliRunner().invoke(app, ["demo", "--keys-out", str(keys), "--logins-out", str(logins)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    written = json.loads(logins.read_text())
    assert set(written) == ROLES == set(json.loads(keys.read_text()))
    assert logins.stat().st_mode & 0o077 == 0, "the sign-ins file is readable by its owner only"
    for role, home in (
        ("buyer_commercial", "/console/query"),
        ("finance", "/console/finance/periods"),
        ("admin", "/console/admin/users"),
    ):
        client = browser(market)
        token = csrf_of(client.get("/login").text)
        signed = client.post("/login", data={**written[role], "csrf_token": token})
        assert signed.status_code == 303 and signed.headers["location"] == home, role
