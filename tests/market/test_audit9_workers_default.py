"""Audit of issues 9 and 12 (branch audit9): process and worker counts default to the machine's cores.

Issue 9: "the number of workers configurable, with a sensible default for the machine's cores"; issue 12:
"`market serve --workers N` ..., defaulting to the cores" and "sandbox workers are sized for the whole
machine, not per process blindly". Nothing tested the defaults: every test set them.

- Sandbox workers: with MARKET_SANDBOX_WORKERS unset, exactly as many queries run at once, machine-wide, as
  this process may use cores. The worker slots are lock files shared by every API process
  (`<data_dir>/run/sandbox/worker-<i>`); taken here as another API process's queries would take them, all
  but one leave a query its worker (200), all of them turn it away (503 sandbox_busy, no queue).
- `market serve` without `--workers`: as many API processes as cores (here: the cores the server is allowed
  to run on, set with its CPU affinity, so both a one-core and a several-core default are checked).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from market import clock
from market.accounts.models import Role
from sandbox.admission import Admission
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.market.test_serve_processes import _api_processes
from tests.metering.helpers import BY_REGION
from tests.served import free_port
from tests.support.busy_sandbox import market_fixture

CORES = sorted(os.sched_getaffinity(0))


# No sandbox_workers: the default is under test. No queue, so a query finding every worker taken is turned
# away at once.
market = market_fixture(sandbox_queue_size=0, sandbox_queue_timeout_seconds=0.3)


def test_sandbox_workers_default_to_the_cores_machine_wide(market: Market) -> None:
    assert market.settings.sandbox_workers is None
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    # The slot files as any API process sees them, whatever this process's settings say.
    slots = Admission(market.settings.run_dir / "sandbox", workers=len(CORES), per_org=1, queue_size=0, queue_timeout=1)
    with slots.occupy(slots.worker_slots()[:-1]):
        answered = query(market, buyer, listed.slug, BY_REGION)
        assert answered.status_code == 200, answered.text
    with slots.occupy(slots.worker_slots()):
        # Another query than the first: the first's answer is in the result cache and needs no worker.
        refused = query(market, buyer, listed.slug, "SELECT region, count(*) AS n FROM people GROUP BY region")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "sandbox_busy" and int(refused.headers["Retry-After"]) >= 1


def _serve_without_workers_option(market: Market, tmp_path: Path, cores: set[int]) -> tuple[int, bool]:
    """(API processes under the server, whether it answered /healthz) for `market serve` on `cores`."""
    port = free_port()
    environment = {
        **os.environ,
        "MARKET_DATA_DIR": str(market.settings.data_dir),
        "MARKET_DATABASE_URL": market.settings.effective_database_url,
        "MARKET_SCHEDULER_ENABLED": "false",
        "MARKET_SANDBOX_PRESTART": "false",
        "MARKET_CLOCK_START": clock.utcnow().isoformat(),
    }
    environment.pop("MARKET_SANDBOX_WORKERS", None)
    with (tmp_path / f"serve-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from market.cli import app; app()", "serve", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )
        try:
            deadline = time.monotonic() + 180
            answered = False
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                    answered = True
                except OSError:
                    time.sleep(0.2)
                    continue
                # One core: the server serves in place, with no child API process to wait for.
                if len(_api_processes(process.pid)) >= (len(cores) if len(cores) > 1 else 0):
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # a supervisor that started more processes than the cores would show them by now
            return len(_api_processes(process.pid)), answered
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to tell a default of the cores from one")
def test_market_serve_starts_one_api_process_per_core_by_default(market: Market, tmp_path: Path) -> None:
    # Every core this test may use: uvicorn's supervisor with one API process per core.
    assert _serve_without_workers_option(market, tmp_path, set(CORES)) == (len(CORES), True)
    # One core: a single process serving in place (no supervisor, no child API process).
    assert _serve_without_workers_option(market, tmp_path, {CORES[0]}) == (0, True)
