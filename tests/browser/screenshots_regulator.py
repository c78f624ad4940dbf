"""Take the README's screenshots of the regulator's and source department's pages:
`python -m tests.browser.screenshots_regulator docs/screenshots`.

Builds the demo in a temporary directory, runs a few queries so the dashboard and audit log have figures,
serves it on a free port and walks the pages in English.

In zh-CN with a second argument, into a directory of its own:
`python -m tests.browser.screenshots_regulator docs/screenshots/zh-CN zh-CN`
(Chromium needs a CJK font for it: .ci/run installs
fonts-wqy-microhei beside Chromium).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import Page, sync_playwright

from market import clock
from market.app import create_app
from market.db import Database, migrate
from market.demo import build_demo, demo_logins
from market.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, DEMO_START, _free_port

QUERIES = {
    "buyer_commercial": "SELECT origin, count(*) AS flights FROM flights GROUP BY origin",
    "buyer_public": "SELECT month, avg(dep_delay) AS avg_delay FROM flights GROUP BY month",
}


def _sign_in(page: Page, login: dict[str, str]) -> None:
    page.goto("/login")
    page.fill("#email", login["email"])
    page.fill("#password", login["password"])
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/console/**")


def main(out: Path, locale: str = "en") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        clock.set_start(DEMO_START)
        keys = build_demo(database, settings)
        logins = demo_logins(database)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, database), port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        for buyer, sql in QUERIES.items():
            for _ in range(3):
                headers = {"Authorization": f"Bearer {keys[buyer]}"}
                body = {"product": "nyc-flights-2013", "sql": sql}
                answer = httpx.post(f"{url}/v1/queries", headers=headers, json=body, timeout=60)
                if answer.status_code != 200:
                    print(f"{buyer}'s query: {answer.status_code} {answer.text[:300]}", file=sys.stderr)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(base_url=url, locale=locale, viewport={"width": 1280, "height": 900})
            _sign_in(page, logins["regulator"])
            page.goto("/console/regulator/dashboard")
            page.wait_for_selector("[data-chart] canvas")
            page.screenshot(path=str(out / "regulator-dashboard.png"), full_page=True)
            page.goto("/console/regulator/authorisations/new")
            page.screenshot(path=str(out / "regulator-grant.png"), full_page=True)
            page.goto("/console/regulator/audit?product=nyc-flights-2013")
            page.screenshot(path=str(out / "regulator-audit.png"))
            source = browser.new_page(base_url=url, locale=locale, viewport={"width": 1280, "height": 900})
            _sign_in(source, logins["source"])
            source.goto("/console/source/resources")
            source.screenshot(path=str(out / "source-resources.png"))
            browser.close()
        server.should_exit = True
        database.dispose()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"), sys.argv[2] if len(sys.argv) > 2 else "en")
