"""The upkeep job run by several replicas at once changes each state once and notifies each user once."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from market import clock
from market.accounts.models import Role
from market.cli import app
from market.compliance.jobs import run_upkeep
from market.notifications.models import Notification
from market.settings import get_settings
from tests.conftest import Market
from tests.factories import grant, listed_product


def test_replicas_expire_and_notify_once(market: Market) -> None:
    listed = listed_product(market)
    buyers = [market.actor(Role.BUYER) for _ in range(3)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="commercial", plan="standard", valid_days=1)
    later = clock.utcnow() + timedelta(days=2)
    results: list[dict[str, int]] = []

    def replica() -> None:
        results.append(run_upkeep(market.database, market.settings, later))

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and sum(r["agreements_expired"] for r in results) == 3
    with market.database.transaction() as session:
        kinds = session.execute(
            select(Notification.dedupe_key, func.count()).group_by(Notification.user_id, Notification.dedupe_key)
        ).all()
    assert len(kinds) == 3 and all(count == 1 for _, count in kinds)
    for buyer in buyers:
        agreements = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"]
        assert [a["status"] for a in agreements] == ["expired"]


def test_market_upkeep_runs_the_job_once_from_the_command_line(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = listed_product(market)
    grant(market, listed, market.actor(Role.BUYER), purpose="commercial", plan="standard", valid_days=1)
    monkeypatch.setenv("MARKET_DATABASE_URL", market.settings.effective_database_url)
    monkeypatch.setenv("MARKET_DATA_DIR", str(market.settings.data_dir))
    monkeypatch.setenv("MARKET_CLOCK_START", "")
    get_settings.cache_clear()
    try:
        with clock.travel_to(clock.utcnow() + timedelta(days=2)):
            first = CliRunner().invoke(app, ["upkeep", "--json"])
            second = CliRunner().invoke(app, ["upkeep", "--json"])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["agreements_expired"] == 1
    assert json.loads(second.stdout)["agreements_expired"] == 0
