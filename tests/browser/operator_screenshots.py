"""Take the operator's console screenshots: `python -m tests.browser.operator_screenshots docs/screenshots`.

Builds the demo in a temporary directory, serves it, signs in as the demo operator and walks its pages in
English, with a file uploaded through the recipe editor and previewed after desensitisation.

In zh-CN with a second argument, into a directory of its own:
`python -m tests.browser.operator_screenshots docs/screenshots/zh-CN zh-CN`
(Chromium needs a CJK font for it: .ci/run installs
fonts-wqy-microhei beside Chromium).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from market import clock
from market.app import create_app
from market.db import Database, migrate
from market.demo import build_demo, demo_logins
from market.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, DEMO_START, _free_port
from tests.browser.test_operator_console import CONTACTS


def main(out: Path, locale: str = "en") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        clock.set_start(DEMO_START)
        build_demo(database, settings)
        login = demo_logins(database)["operator"]
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, database), port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        contacts = Path(data) / "contacts.csv"
        contacts.write_text(CONTACTS)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(
                base_url=f"http://127.0.0.1:{port}", locale=locale, viewport={"width": 1280, "height": 900}
            )
            page.goto("/login")
            page.fill("#email", login["email"])
            page.fill("#password", login["password"])
            page.locator("main form button[type=submit]").click()
            page.wait_for_url("**/console/products")
            page.screenshot(path=str(out / "operator-products.png"), full_page=True)
            product = page.locator("main table a[href^='/console/products/']").first.get_attribute("href")
            page.goto("/console/products/new?zone=transport")
            page.fill("#plan_code_0", "standard")
            page.fill("#plan_per_query_minor_0", "9.99")
            page.locator("#product-form button[type=submit]").click()
            page.screenshot(path=str(out / "operator-wizard.png"), full_page=True)
            page.goto(f"{product}/build")
            page.set_input_files("#upload-file", str(contacts))
            page.wait_for_url("**/build?upload=*")
            page.select_option("#action_0", "pseudonymise")
            page.select_option("#role_0", "privacy_unit")
            page.select_option("#action_1", "drop")
            page.select_option("#action_2", "mask")
            page.fill("#param_2", "3,4")
            page.locator("button[name=action][value=preview]").click()
            page.wait_for_selector("#preview")
            page.screenshot(path=str(out / "operator-recipe.png"), full_page=True)
            page.goto(f"{product}/versions/1")
            page.screenshot(path=str(out / "operator-version.png"), full_page=True)
            page.goto("/console/requests")
            page.screenshot(path=str(out / "operator-requests.png"), full_page=True)
            browser.close()
        server.should_exit = True
        database.dispose()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"), sys.argv[2] if len(sys.argv) > 2 else "en")
