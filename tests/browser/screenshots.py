"""Take the README's console screenshots with Playwright: `python -m tests.browser.screenshots docs/screenshots`.

Builds the demo in a temporary directory, serves it on a free port, and walks the buyer's pages in English.

In zh-CN with a second argument, into a directory of its own:
`python -m tests.browser.screenshots docs/screenshots/zh-CN zh-CN`
(Chromium needs a CJK font for it: .ci/run installs
fonts-wqy-microhei beside Chromium).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import sync_playwright

from market import clock
from market.app import create_app
from market.db import Database, migrate
from market.demo import build_demo, demo_logins
from market.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, DEMO_START, _free_port, set_sql

SQL = (
    "SELECT month, count(*) AS flights, avg(arr_delay) AS avg_arrival_delay FROM flights GROUP BY month ORDER BY month"
)


def main(out: Path, locale: str = "en") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        clock.set_start(DEMO_START)
        keys = build_demo(database, settings)
        login = demo_logins(database)["buyer_commercial"]
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, database), port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(base_url=url, locale=locale, viewport={"width": 1280, "height": 900})
            page.goto("/")
            page.screenshot(path=str(out / "catalogue.png"))
            page.goto("/products/nyc-flights-2013")
            page.screenshot(path=str(out / "product.png"))
            page.goto("/login")
            page.fill("#email", login["email"])
            page.fill("#password", login["password"])
            page.locator("main form button[type=submit]").click()
            page.wait_for_url("**/console/query")
            page.goto("/console/query?product=nyc-flights-2013")
            set_sql(page, SQL)
            page.locator("#run").click()
            page.wait_for_selector("#result-table")
            page.screenshot(path=str(out / "query.png"), full_page=True)
            page.goto("/console/usage")
            page.screenshot(path=str(out / "usage.png"))
            clock.advance(timedelta(hours=7))
            finance = {"Authorization": f"Bearer {keys['finance']}"}
            period = DEMO_START.strftime("%Y-%m")
            httpx.post(f"{url}/v1/billing/runs", headers=finance, json={"period": period, "finalize": True}, timeout=60)
            page.goto("/console/invoices")
            page.locator("main table a[href^='/console/invoices/']").first.click()
            page.screenshot(path=str(out / "invoice.png"), full_page=True)
            # The public disclosure page and a published operating report.
            published = []
            for role, kind in (("regulator", "regulator_disclosure"), ("operator", "operating_report")):
                auth = {"Authorization": f"Bearer {keys[role]}"}
                body = {"year": DEMO_START.year, "kind": kind}
                report = httpx.post(f"{url}/v1/disclosures", headers=auth, json=body, timeout=60).json()
                httpx.post(f"{url}/v1/disclosures/{report['id']}/publish", headers=auth, timeout=60)
                published.append(report["id"])
            page.goto("/disclosures")
            page.screenshot(path=str(out / "disclosures.png"))
            page.goto(f"/disclosures/{published[1]}")
            page.screenshot(path=str(out / "operating-report.png"), full_page=True)
            browser.close()
        server.should_exit = True
        database.dispose()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"), sys.argv[2] if len(sys.argv) > 2 else "en")
