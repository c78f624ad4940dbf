"""A real Stripe-compatible server for the billing tests: localstripe, started once per session."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Market, running_market

WEBHOOK_SECRET = "whsec_test_billing"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _billing_clock(billed_period_clock: None) -> None:
    """Every billing test runs on the billed-period clock."""


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            request = urllib.request.Request(f"{url}/v1/customers", headers={"Authorization": "Bearer sk_test_x"})
            urllib.request.urlopen(request, timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def stripe_market(database_factory, tmp_path: Path, localstripe_url: str) -> Iterator[Market]:
    """Like `market`, with Stripe pointed at localstripe."""
    with running_market(
        database_factory,
        tmp_path / "data",
        stripe_api_key="sk_test_billing",
        stripe_api_base=localstripe_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
    ) as running:
        yield running


@pytest.fixture
def cli_env(market: Market, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Point the `market` CLI, run in-process, at the test's database and data directory."""
    from market.settings import get_settings

    monkeypatch.setenv("MARKET_DATABASE_URL", market.settings.effective_database_url)
    monkeypatch.setenv("MARKET_DATA_DIR", str(market.settings.data_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
