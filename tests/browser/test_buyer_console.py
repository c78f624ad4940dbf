"""The buyer's path in Chromium, in both languages: catalogue -> request access -> approved -> paid query
-> invoice, all through the console's pages. Other roles' steps (the operator's approval, finance's billing
run) go through the API until their pages exist (parts 2 and 3 of the console)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from market import clock
from tests.browser.conftest import Live, axe_source, dump, require_axe, serious_violations, set_sql

FLIGHTS = "nyc-flights-2013"
SQL = "SELECT origin, count(*) AS flights, avg(dep_delay) AS avg_delay FROM flights GROUP BY origin ORDER BY origin"
LANGUAGES = {"en": "en", "zh-CN": "zh-CN"}
PERIODS = {"en": datetime(2031, 3, 31, 18, 0, tzinfo=UTC), "zh-CN": datetime(2031, 4, 30, 18, 0, tzinfo=UTC)}
"""Each language's run queries in the evening of a month's last day, then bills that month after midnight."""


def new_buyer(live: Live, name: str) -> tuple[str, str]:
    """An enterprise buyer the admin registers, with a web password; returns its e-mail and password."""
    org = live.api("admin", "POST", "/v1/orgs", json={"name": name, "kind": "buyer"})
    assert org.status_code == 201, org.text
    email = f"{secrets.token_hex(4)}@buyer.example"
    user = live.api(
        "admin", "POST", "/v1/users", json={"org_id": org.json()["id"], "name": name, "email": email, "role": "buyer"}
    )
    assert user.status_code == 201, user.text
    password = secrets.token_urlsafe(16)
    done = live.api("admin", "PUT", f"/v1/users/{user.json()['id']}/password", json={"password": password})
    assert done.status_code == 200, done.text
    return email, password


def sign_in(page: Page, email: str, password: str) -> None:
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.locator("main form button[type=submit]").click()


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_catalogue_to_paid_query_to_invoice(live: Live, page_in: Any, language: str) -> None:
    clock.set_start(PERIODS[language])
    period = PERIODS[language].strftime("%Y-%m")
    email, password = new_buyer(live, f"Harbour Logistics {language}")
    page = page_in(language)

    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", LANGUAGES[language])
    page.locator(f"a[href='/products/{FLIGHTS}']").click()
    expect(page.locator("code", has_text="tailnum").first).to_be_visible()
    expect(page.locator(".terms").first).to_contain_text("2.00")
    page.locator("a.button[href^='/login']").click()
    sign_in(page, email, password)

    # The request form, with the product chosen; a wrong plan for the purpose is refused in place.
    expect(page).to_have_url(re.compile(r"/console/access/new\?product=" + FLIGHTS))
    page.check("#plan-public-interest")
    page.select_option("#purpose", "commercial")
    page.fill("#scenario", "route-planning")
    page.fill("#justification", "Delay patterns by airport for our trucking schedules.")
    page.locator("main form button[type=submit]").click()
    expect(page.locator("#plan-error")).to_be_visible()
    expect(page.locator("#scenario")).to_have_value("route-planning")
    page.check("#plan-commercial-standard")
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/console/access\?sent=1"))
    expect(page.locator(".status-pending").first).to_be_visible()

    # The operator approves (its pages come in part 2).
    pending = live.api("operator", "GET", "/v1/access-requests", params={"status": "pending"}).json()["items"]
    mine = [r for r in pending if r["buyer"] == f"Harbour Logistics {language}"]
    assert len(mine) == 1, dump(pending)
    decided = live.api(
        "operator", "POST", f"/v1/access-requests/{mine[0]['id']}/decision", json={"decision": "approve"}
    )
    assert decided.status_code == 200, decided.text
    page.reload()
    expect(page.locator(".status-active").first).to_be_visible()
    expect(page.locator("a[href^='/console/agreements/'][href$='/odrl']")).to_have_count(1)

    # A paid query: result table, chart, the charge; then a refused one, with the advice next to the SQL.
    page.goto(f"/console/query?product={FLIGHTS}")
    set_sql(page, SQL)
    page.locator("#run").click()
    expect(page.locator("#result-table tbody tr")).to_have_count(3)
    expect(page.locator(".charge .status-billable")).to_be_visible()
    expect(page.locator(".charge strong")).to_contain_text("2.00")
    expect(page.locator("#chart svg, #chart canvas").first).to_be_visible()
    with page.expect_download() as download:
        page.locator("[data-csv-from]").click()
    assert download.value.suggested_filename.endswith(".csv")
    set_sql(page, "SELECT max(dep_delay) FROM flights")
    page.locator("#run").click()
    expect(page.locator("#sql-error")).to_contain_text("disallowed_aggregate")
    expect(page.locator("main table").last).to_contain_text("SELECT origin")

    # Usage, then the month ends and finance bills it (its pages come in part 3).
    page.goto("/console/usage")
    expect(page.locator("#chart svg, #chart canvas").first).to_be_visible()
    clock.set_start(PERIODS[language] + timedelta(hours=7))
    billed = live.api("finance", "POST", "/v1/billing/runs", json={"period": period, "finalize": True})
    assert billed.status_code == 200, billed.text

    page.goto("/console/invoices")
    page.locator("main table a[href^='/console/invoices/']").first.click()
    expect(page.locator(".facts").first).to_contain_text("2.00")
    expect(page.locator("#h-pay")).to_be_visible()
    page.locator("a[href*='/lines/']").first.click()
    expect(page.locator("main table code").first).to_contain_text("qry_")


def test_pages_pass_axe_with_no_serious_violation(live: Live, page_in: Any) -> None:
    """The visitor's pages in both languages; the buyer's console pages once, in zh-CN (as the other roles' are)."""
    source = require_axe()
    found: dict[str, Any] = {}
    for language in LANGUAGES:
        visitor = page_in(language, bypass_csp=True)  # axe is injected as a script; the pages' own CSP stays on
        for path in ("/", f"/products/{FLIGHTS}", "/login"):
            visitor.goto(path)
            found[f"{language} {path}"] = serious_violations(visitor, source)
    page = page_in("zh-CN", bypass_csp=True)
    page.goto("/login")
    sign_in(page, live.logins["buyer_commercial"]["email"], live.logins["buyer_commercial"]["password"])
    page.wait_for_url(re.compile("/console/"))
    for path in (
        "/console/query",
        "/console/access",
        f"/console/access/new?product={FLIGHTS}",
        "/console/usage",
        "/console/invoices",
    ):
        page.goto(path)
        found[path] = serious_violations(page, source)
    assert {p: v for p, v in found.items() if v} == {}, dump(found)


def test_keyboard_only_sign_in_and_skip_link(live: Live, page_in: Any) -> None:
    page = page_in("en")
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#main$"))
    page.goto("/login")
    expect(page.locator("#email")).to_be_focused()
    page.keyboard.type(live.logins["buyer_public"]["email"])
    page.keyboard.press("Tab")
    page.keyboard.type(live.logins["buyer_public"]["password"])
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("/console/query"))
    expect(page.locator("header nav a[aria-current=page]")).to_have_attribute("href", "/console/query")


def test_language_switch_is_remembered(live: Live, page_in: Any) -> None:
    page = page_in("en")
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.locator("button[name=lang][value=zh_CN]").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.goto(f"/products/{FLIGHTS}")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def test_a_running_query_shows_progress_and_can_be_cancelled(live: Live, page_in: Any) -> None:
    page = page_in("en")
    page.goto("/login")
    sign_in(page, live.logins["buyer_public"]["email"], live.logins["buyer_public"]["password"])
    page.wait_for_url(re.compile("/console/query"))
    page.goto(f"/console/query?product={FLIGHTS}")
    held: list[Any] = []
    # The query's request is held, unanswered, as a long query would be.
    page.route("**/console/query", lambda route: held.append(route) if route.request.method == "POST" else None)
    set_sql(page, SQL)
    page.locator("#run").click()
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.locator("#run")).to_be_disabled()
    expect(page.locator("#progress")).to_contain_text(" s")
    page.locator("#cancel").click()
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#run")).to_be_enabled()
    expect(page.locator("#progress")).to_contain_text("Cancelled")
    assert len(held) == 1


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_a_wrong_address_and_the_public_disclosures_read_in_the_visitors_language(
    live: Live, page_in: Any, language: str
) -> None:
    page = page_in(language, bypass_csp=True)  # axe is injected as an inline script
    missing = page.goto("/console/no-such-page")
    assert missing is not None and missing.status == 404
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.locator("main [role=alert]")).to_contain_text("/console/no-such-page")
    expect(page.locator("main a[href='/']")).to_be_visible()  # the way back
    # A published operating report is on the public page, as a page and as PDFs in both languages.
    year = clock.utcnow().year
    drafted = live.api("operator", "POST", "/v1/disclosures", json={"year": year, "kind": "operating_report"})
    if drafted.status_code == 201:  # the other language's run published it already (409)
        assert live.api("operator", "POST", f"/v1/disclosures/{drafted.json()['id']}/publish").status_code == 200
    page.goto("/disclosures")
    expect(page.locator("h1")).to_have_text("信息披露" if language == "zh-CN" else "Public disclosures")
    expect(page.locator("a[href*='format=pdf'][href*='lang=zh-CN']").first).to_be_visible()
    page.locator("table a", has_text="HTML").first.click()
    expect(page.locator("h1")).to_have_text("年度运营报告" if language == "zh-CN" else "Annual operating report")
    source = axe_source()
    if source is not None:
        for path in ("/console/no-such-page", "/disclosures"):
            page.goto(path)
            assert serious_violations(page, source) == [], path
