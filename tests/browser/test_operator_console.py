"""The operator's supply path in Chromium, in both languages: a product created inside the grant (a price over the
cap refused before it is sent), a file uploaded in parts with progress (the
network fails mid-way; after a reload only the rest is sent), the recipe
with a preview after desensitisation, the build, an audit finding resolved, submission; then the regulator
approves (through the API: its pages are another branch's) and the product is listed in the catalogue."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Live, dump, require_axe, serious_violations

LANGUAGES = {"en": "en", "zh-CN": "zh-CN"}
CONTACTS = "person_id,name,phone,region,amount\n" + "".join(
    f"P{i:04d},Person {i},138{i:08d},{['north', 'south'][i % 2]},{i % 50}\n" for i in range(60)
)
WATCH_PROGRESS = """() => {
  const bar = document.querySelector('#upload-progress');
  new MutationObserver(() => {
    const seen = Number(sessionStorage.getItem('progress') || 0);
    sessionStorage.setItem('progress', String(Math.max(seen, Number(bar.value))));
  }).observe(bar, {attributes: true});
}"""


def sign_in_as_operator(page: Page, live: Live) -> None:
    page.goto("/login")
    page.fill("input[name=email]", live.logins["operator"]["email"])
    page.fill("input[name=password]", live.logins["operator"]["password"])
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile("/console/products$"))


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_supply_path_from_wizard_to_catalogue(live: Live, page_in: Any, language: str, tmp_path: Path) -> None:
    slug = f"bus-{language.lower()}-{secrets.token_hex(3)}"
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(CONTACTS)
    page = page_in(language)
    sign_in_as_operator(page, live)
    expect(page.locator("html")).to_have_attribute("lang", LANGUAGES[language])

    # The wizard: the zone first (only the grant's), then the rest; a price over the cap never leaves the page.
    page.locator("main a[href='/console/products/new']").click()
    assert page.locator("#zone option[value]:not([value=''])").evaluate_all("os => os.map(o => o.value)") == [
        "transport"
    ]
    page.select_option("#zone", "transport")
    page.wait_for_url(re.compile(r"zone=transport"))
    page.fill("#slug", slug)
    page.fill("#title", f"Bus riders {language}")
    page.select_option("#region", "CN-11")
    page.locator("input[name=resources]").first.check()
    page.fill("#plan_code_0", "standard")
    page.select_option("#plan_kind_0", "commercial")
    page.fill("#plan_per_query_minor_0", "9.99")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    page.locator("#product-form button[type=submit]").click()
    expect(page.locator(".plan-row [data-cap-error]").first).to_be_visible()
    expect(page.locator("#plan_per_query_minor_0")).to_have_attribute("aria-invalid", "true")
    assert sent == [], "the over-cap plan was sent"
    page.fill("#plan_per_query_minor_0", "1.20")
    page.locator("#product-form button[type=submit]").click()
    page.wait_for_url(re.compile(f"/console/products/{slug}\\?created=1"))
    expect(page.locator("#product-state .status-draft")).to_be_visible()

    # Upload in parts of 1,000 bytes: after the first part the network goes down; the page retries by itself,
    # then offers a retry. Reloaded and given the same file, it asks the server how much it has and sends only
    # the rest, never the file from byte 0 again; progress reaches 100 %.
    page.locator(f"main a[href='/console/products/{slug}/build']").first.click()
    page.wait_for_url(re.compile(f"/console/products/{slug}/build$"))
    small_parts = "document.getElementById('dropzone').dataset.partBytes = '1000'"
    page.evaluate(small_parts)
    ranges: list[str] = []
    page.on("request", lambda r: ranges.append(r.headers.get("content-range", "")) if r.method == "PUT" else None)
    parts: list[str] = []

    def network_down_after_one_part(route: Route) -> None:
        if route.request.method != "PUT":
            route.continue_()
            return
        parts.append(route.request.headers.get("content-range", ""))
        if len(parts) == 1:
            route.continue_()
        else:
            route.abort("connectionreset")

    page.route("**/console/uploads/sessions/*", network_down_after_one_part)
    page.set_input_files("#upload-file", str(contacts))
    expect(page.locator("#upload-error")).to_be_visible(timeout=20_000)
    expect(page.locator("#upload-retry")).to_be_visible()
    assert parts[0].startswith("bytes 0-999/") and len(parts) > 1
    assert all(p.startswith("bytes 1000-") for p in parts[1:]), parts
    page.unroute("**/console/uploads/sessions/*")
    page.reload()
    page.evaluate(small_parts)
    page.evaluate(WATCH_PROGRESS)
    ranges.clear()
    page.set_input_files("#upload-file", str(contacts))
    page.wait_for_url(re.compile(r"/build\?upload=upl_"))
    assert ranges[0].startswith("bytes 1000-1999/"), ranges
    assert not any(r.startswith("bytes 0-") for r in ranges), "the resumed upload started again from byte 0"
    assert page.evaluate("sessionStorage.getItem('progress')") == "100"

    # The recipe: pseudonymise the person, drop the name, keep the phone hidden (the audit will object).
    page.select_option("#action_0", "pseudonymise")
    page.select_option("#role_0", "privacy_unit")
    page.select_option("#action_1", "drop")
    page.select_option("#action_2", "keep")
    page.select_option("#type_2", "varchar")
    page.select_option("#role_2", "hidden")
    page.select_option("#role_3", "dimension")
    page.select_option("#type_4", "integer")
    page.select_option("#role_4", "measure")
    page.fill("#k", "5")
    page.locator("button[name=action][value=preview]").click()
    preview = page.locator("#preview")
    expect(preview).to_be_visible()
    expect(preview.locator("thead")).not_to_contain_text("name")
    expect(preview).not_to_contain_text("Person 1")
    expect(preview).not_to_contain_text("P0001")
    # The build runs in the background: its page shows the stages while it polls, then opens the version.
    jobs: list[str] = []
    page.on("request", lambda r: jobs.append(r.url) if re.search(r"/builds/bld_\w+$", r.url) else None)
    page.locator("#build-button").click()
    page.wait_for_url(re.compile(f"/console/products/{slug}/versions/1"))
    version_url = page.url
    page.goto(jobs[0])
    expect(page.locator("#build-stages li")).to_have_count(8)
    expect(page.locator("#build-stages li.passed")).to_have_count(8)
    expect(page.locator("#build-version")).to_have_attribute("href", re.compile(f"/console/products/{slug}/versions/1"))
    page.goto(version_url)

    # Review preparation: the blocking finding is resolved with a justification, then the version is submitted.
    finding = page.locator(".finding[data-finding='contacts.phone.phone_number']")
    expect(finding.locator(".status-rejected")).to_be_visible()
    finding.locator("textarea").fill("Phone numbers are hidden: no buyer can select or group by them.")
    finding.locator("button[type=submit]").click()
    expect(page.locator("#open-findings")).to_have_text("0")
    page.locator("#submit-review").click()
    page.wait_for_url(re.compile(f"/console/products/{slug}\\?submitted=1"))
    expect(page.locator("#product-state .status-submitted")).to_be_visible()

    # The regulator approves (its review pages are on another branch); the product is listed and public.
    reviewed = live.api("regulator", "POST", f"/v1/products/{slug}/review", json={"decision": "approve"})
    assert reviewed.status_code == 200, reviewed.text
    page.reload()
    expect(page.locator("#product-state .status-listed")).to_be_visible()
    expect(page.locator("main .history")).to_contain_text("Wang Li")
    page.locator(f"main a[href='/products/{slug}']").click()
    expect(page.locator("main h1")).to_contain_text(f"Bus riders {language}")
    page.goto("/")
    expect(page.locator(f"a[href='/products/{slug}']")).to_be_visible()


def test_operator_pages_pass_axe_with_no_serious_violation(live: Live, page_in: Any) -> None:
    source = require_axe()
    page = page_in("zh-CN", bypass_csp=True)
    sign_in_as_operator(page, live)
    slug = page.locator("main table a[href^='/console/products/']").first.get_attribute("href")
    found: dict[str, Any] = {}
    for path in (
        "/console/products",
        "/console/products/new?zone=transport",
        slug,
        f"{slug}/build",
        f"{slug}/versions/1",
        "/console/requests",
        "/console/sales",
    ):
        assert path
        page.goto(path)
        found[path] = serious_violations(page, source)
    assert {p: v for p, v in found.items() if v} == {}, dump(found)
