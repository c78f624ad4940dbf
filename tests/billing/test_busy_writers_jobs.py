"""Issue 12, "no request ever waits on a busy-retry loop" (branch busy-writers): the scheduler's jobs write only
inside BEGIN IMMEDIATE on SQLite.

Each job runs as APScheduler runs it: the job function, by itself, in a thread of its own (no test code on its
stack, so tests/conftest.py's `sqlite_writes_begin_immediate` checks every statement it sends). On main the
billing cycle, the usage checkpoint and the upkeep wrote in deferred transactions (SQLite's busy handler).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from billing.scheduler import billing_cycle_job, usage_checkpoint_job
from market.compliance.jobs import upkeep_job
from tests.billing.helpers import BILLED_PERIOD, end_period, invoices_of, scene
from tests.conftest import Market


def _run_alone(job: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `job` as the scheduler does: in a thread whose target is the job itself (no test code on its stack,
    where the write check would take its writes for the tests' own set-up)."""
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert not failures


def test_the_scheduled_jobs_write_under_begin_immediate(
    market: Market, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scene(market)
    end_period()
    for job in (billing_cycle_job, usage_checkpoint_job, upkeep_job):
        _run_alone(job, monkeypatch)
    billed = invoices_of(market, s.commercial)
    assert [invoice["period"] for invoice in billed] == [BILLED_PERIOD]
