"""The billing scheduler runs in exactly one API process per machine, and a survivor takes over."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from billing.scheduler import scheduler_if_first
from market.app import create_app
from tests.conftest import Market, running_market


def test_of_two_api_processes_on_one_data_directory_exactly_one_runs_the_scheduler(
    database_factory: Any, tmp_path: Path
) -> None:
    with running_market(database_factory, tmp_path / "data") as market:
        settings = market.settings.model_copy(update={"scheduler_enabled": True})
        apps = [create_app(settings, market.database) for _ in range(2)]
        with TestClient(apps[0]), TestClient(apps[1]):
            assert sorted(app.state.scheduler.running for app in apps) == [False, True]


def test_when_the_process_running_the_scheduler_stops_another_takes_over(market: Market) -> None:
    with contextlib.ExitStack() as first_process:
        first = first_process.enter_context(scheduler_if_first(market.database, market.settings))
        with scheduler_if_first(market.database, market.settings, take_over_seconds=0.01) as second:
            assert first.running and not second.running
            first_process.close()  # the first process ends: the kernel releases its lock
            assert not first.running
            for _ in range(2000):
                if second.running:
                    break
                time.sleep(0.005)
            assert second.running
        assert not second.running
