"""Browser tests: Debian's Chromium through pytest-playwright, against a live server on the suite's database.

One server (uvicorn in a thread, so the test can move the shared clock) and one browser serve a whole
module, on the module's own copy of the demo marketplace: the session builds the demo once, at DEMO_START
(tests/conftest.py, `demo_templates`), and `live` copies it. A failing test leaves a screenshot in test-results/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page

from market.app import create_app
from market.db import Database
from market.settings import Settings
from tests.conftest import Demo, DemoTemplates

CHROMIUM = os.environ.get("MARKET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path("test-results")
DEMO_START = datetime(2031, 3, 31, 18, 0, tzinfo=UTC)
"""The live server's clock starts here, so a billing period ends during the module (no waiting a month)."""

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, as .ci/run does)", allow_module_level=True)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright launches Debian's Chromium, headless, with no background network traffic."""
    return {"executable_path": CHROMIUM, "args": CHROMIUM_FLAGS}


@dataclass
class Live:
    """A running demo marketplace: its URL, the demo's API keys and web sign-ins, and its database."""

    url: str
    keys: dict[str, str]
    logins: dict[str, dict[str, str]]
    database: Database
    settings: Settings

    def api(self, role: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Set-up steps of other roles, whose pages come in a later part of the console (never the buyer's)."""
        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)


def sign_in(page: Page, live: Live, who: str) -> None:
    """Sign `who` (a key of the demo's logins) in through the login form and wait for the console."""
    page.goto("/login")
    page.fill("input[name=email]", live.logins[who]["email"])
    page.fill("input[name=password]", live.logins[who]["password"])
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile("/console/"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(demo: Demo) -> Iterator[str]:
    """The app on `demo`'s copy, served by uvicorn in a thread (so a test can move the shared clock): its URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(demo.settings, demo.database), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(demo_templates: DemoTemplates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The demo marketplace, as built at DEMO_START, on the module's own copy (the session builds it once).

    A module needing other settings (Stripe, say) overrides `live` the same way: `demo_templates.copy(data_dir,
    start=DEMO_START, **settings)`, then `serving(demo)`; see tests/browser/test_finance_admin_console.py."""
    data_dir = tmp_path_factory.mktemp("live") / "data"
    with demo_templates.copy(data_dir, start=DEMO_START) as demo, serving(demo) as url:
        yield Live(url, demo.keys, demo.logins, demo.database, demo.settings)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


def screenshot_on_failure(request: pytest.FixtureRequest, page: Any) -> None:
    if request.node.stash.get(FAILED, False):
        SCREENSHOTS.mkdir(exist_ok=True)
        name = "".join(ch if ch.isalnum() else "-" for ch in request.node.nodeid)[-150:]
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def page_in(browser: Browser, live: Live, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function making a fresh page in a language (its own cookies), screenshotted if the test fails."""
    pages: list[Page] = []

    def make(language: str, **options: Any) -> Page:
        context = browser.new_context(base_url=live.url, locale=language, **options)
        page = context.new_page()
        pages.append(page)
        return page

    yield make
    for page in pages:
        screenshot_on_failure(request, page)
        page.context.close()


def axe_source() -> str | None:
    """axe-core, vendored with the console's assets (or named by MARKET_AXE_JS)."""
    named = os.environ.get("MARKET_AXE_JS")
    if named:
        return Path(named).read_text()
    vendor = Path(__file__).resolve().parents[2] / "market" / "console" / "static" / "vendor"
    found = sorted(vendor.rglob("axe*.js")) if vendor.is_dir() else []
    return found[0].read_text() if found else None


def require_axe() -> str:
    """axe-core's source, or skip the test, saying why, when it is neither vendored nor named."""
    source = axe_source()
    if source is None:
        pytest.skip("axe-core is not vendored in market/console/static/vendor (nor named by MARKET_AXE_JS)")
    return source


def serious_violations(page: Any, source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(content=source)
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


def set_sql(page: Any, sql: str) -> None:
    """Type into the SQL editor: CodeMirror when it is vendored (the textarea is then hidden), else the textarea."""
    page.evaluate(
        """sql => { const cm = document.querySelector('.CodeMirror');
        if (cm && cm.CodeMirror) { cm.CodeMirror.setValue(sql); }
        else { document.querySelector("#sql").value = sql; } }""",
        sql,
    )
