"""The regulator's and the source department's paths in Chromium, in both languages: an authorisation granted
through the form (region tree, fee caps), a resource the source registers and the regulator registers, a
product review returned then approved, the audit log searched and a query flagged, and the dashboard with
its charts and CSV download. The operator's and buyer's steps go through the API (their pages are tested
elsewhere)."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Live, dump, require_axe, serious_violations, sign_in
from tests.factories import PEOPLE_POLICY, PLANS, people_csv

LANGUAGES = ("zh-CN", "en")
FLIGHTS = "nyc-flights-2013"


def new_operator(live: Live, name: str) -> str:
    made = live.api("admin", "POST", "/v1/orgs", json={"name": name, "kind": "operator"})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_grant_and_resource_registration(live: Live, page_in: Any, language: str) -> None:
    operator = f"Harbour Data Operations {language}"
    operator_id = new_operator(live, operator)
    regulator = page_in(language)
    sign_in(regulator, live, "regulator")
    expect(regulator).to_have_url(re.compile("/console/regulator/dashboard"))

    # The grant form: a mistake comes back in place, then the grant is made.
    regulator.goto("/console/regulator/authorisations/new")
    regulator.select_option("#operator", operator_id)
    regulator.locator("#region-CN-11-05").check()
    regulator.fill("#valid_until", "2033-12-31")
    regulator.locator("main form button[type=submit]").click()
    expect(regulator.locator("#zones-error")).to_be_visible()
    expect(regulator.locator("#region-CN-11-05")).to_be_checked()
    regulator.locator("#zone-transport").check()
    regulator.fill("#cap_transport_per_query", "3")
    regulator.fill("#cap_transport_per_gb", "10")
    regulator.fill("#cap_transport_monthly", "2000")
    regulator.fill("#scenarios", "route-planning")
    regulator.locator("main form button[type=submit]").click()
    expect(regulator).to_have_url(re.compile(r"/console/regulator/authorisations/aut_\w+\?granted=1"))
    expect(regulator.locator("main .facts")).to_contain_text("CN-11-05")
    expect(regulator.locator("main table").first).to_contain_text("3.00")
    grants = live.api("regulator", "GET", "/v1/authorisations", params={"limit": 200}).json()["items"]
    made = [g for g in grants if g["operator"] == operator_id]
    assert len(made) == 1 and made[0]["fee_caps"][0]["max_per_query_minor"] == 300, dump(made)

    # The source department registers a resource; the regulator registers it under a code.
    title = f"Ferry boardings {secrets.token_hex(3)}"
    source = page_in(language)
    sign_in(source, live, "source")
    source.goto("/console/source/resources/new")
    source.fill("#title", title)
    source.fill("#description", "Every boarding on the city's ferries.")
    source.select_option("#zone", "transport")
    source.fill("#region", "CN-11")
    source.fill("#fields", "ticket_id, pier, time")
    source.fill("#update_frequency", "daily")
    source.locator("main form button[type=submit]").click()
    expect(source.locator(".notice")).to_be_visible()
    expect(source.locator(".status-pending")).to_be_visible()

    regulator.goto("/console/regulator/resources")
    regulator.get_by_role("link", name=title).click()
    code = f"CN-11-TR-2031-{secrets.token_hex(2).upper()}"
    regulator.fill("#registration_code", code)
    regulator.locator("#register").click()
    expect(regulator.locator(".notice")).to_be_visible()
    expect(regulator.locator("main .facts")).to_contain_text(code)

    source.goto("/console/source/resources")
    expect(source.locator("#resources")).to_contain_text(code)
    source.get_by_role("link", name=title).click()
    expect(source.locator("#h-notice")).to_be_visible()


def _submitted_product(live: Live, slug: str) -> None:
    """The demo operator's new product, uploaded and submitted through the API (its pages are con-op's)."""
    body = {"slug": slug, "title": f"Trips {slug}", "zone": "transport", "region": "CN-11", "plans": PLANS}
    created = live.api("operator", "POST", "/v1/products", json=body)
    assert created.status_code == 201, created.text
    uploaded = live.api(
        "operator",
        "POST",
        f"/v1/products/{slug}/versions",
        files=[("files", ("people.csv", people_csv(), "text/csv"))],
        data={"policy": json.dumps(PEOPLE_POLICY)},
    )
    assert uploaded.status_code == 201, uploaded.text
    submitted = live.api("operator", "POST", f"/v1/products/{slug}/submit")
    assert submitted.status_code == 200, submitted.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_product_review_returned_then_approved(live: Live, page_in: Any, language: str) -> None:
    slug = f"trips-{language.lower()}"
    _submitted_product(live, slug)
    page = page_in(language)
    sign_in(page, live, "regulator")
    page.goto("/console/regulator/reviews")
    page.locator(f"#queue a[href='/console/regulator/reviews/{slug}']").click()
    expect(page.locator("#diff")).to_contain_text("min_group_size")
    expect(page.locator("#fees")).to_contain_text("1.50")
    page.locator("#return").click()
    expect(page.locator("#comment-error")).to_be_visible()
    page.fill("#comment", "Describe the trip categories in the documentation.")
    page.locator("#return").click()
    expect(page).to_have_url(re.compile(r"decided=return"))
    expect(page.locator("main table").last).to_contain_text("Describe the trip categories")

    assert live.api("operator", "POST", f"/v1/products/{slug}/submit").status_code == 200
    page.reload()
    page.fill("#per_query", "2")
    page.fill("#per_gb", "10")
    page.fill("#monthly", "100")
    page.locator("#h-fees ~ form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"fee_standard=1"))
    page.fill("#comment", "Audit clean.")
    page.locator("#approve").click()
    expect(page).to_have_url(re.compile(r"decided=approve"))
    expect(page.locator(".status-listed").first).to_be_visible()
    page.goto("/")
    expect(page.locator(f"a[href='/products/{slug}']").first).to_be_visible()


@pytest.mark.parametrize("language", LANGUAGES)
def test_audit_search_and_dashboard_csv(live: Live, page_in: Any, language: str) -> None:
    sql = f"SELECT origin, count(*) AS flights_{language[:2]} FROM flights GROUP BY origin"
    ran = live.api("buyer_commercial", "POST", "/v1/queries", json={"product": FLIGHTS, "sql": sql})
    assert ran.status_code == 200, ran.text
    page = page_in(language)
    sign_in(page, live, "regulator")
    page.goto("/console/regulator/audit")
    page.fill("#product", FLIGHTS)
    page.select_option("#purpose", "commercial")
    page.locator("#search").click()
    record = page.locator("#records > li", has_text=f"flights_{language[:2]}").first
    expect(record.locator(".sql-sent")).to_contain_text(sql)
    expect(record.locator(".sql-run")).to_be_visible()
    record.locator("input[name=reason]").fill("Check the grouping.")
    record.locator("form button[type=submit]").last.click()
    page.locator("#flagged").check()
    page.locator("#search").click()
    expect(page.locator("#records")).to_contain_text("Check the grouping.")

    page.goto("/console/regulator/dashboard")
    expect(page.locator("[data-chart='data-queries'] canvas").first).to_be_visible()
    with page.expect_download() as download:
        page.locator("#csv-queries").click()
    assert download.value.suggested_filename.startswith("queries-")
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115 - the download's temporary file
    assert text.startswith("day,purpose,public_interest,queries,amount_minor,currency") and ",commercial," in text


def test_pages_pass_axe_with_no_serious_violation(live: Live, page_in: Any) -> None:
    source = require_axe()
    found: dict[str, Any] = {}
    page = page_in("zh-CN", bypass_csp=True)  # axe is injected as a script; the pages' own CSP stays on
    sign_in(page, live, "regulator")
    grant = live.api("regulator", "GET", "/v1/authorisations").json()["items"][0]["id"]
    resource = live.api("regulator", "GET", "/v1/resources").json()["items"][0]["id"]
    for path in (
        "/console/regulator/dashboard",
        "/console/regulator/authorisations/new",
        f"/console/regulator/authorisations/{grant}/suspend",
        f"/console/regulator/resources/{resource}",
        f"/console/regulator/reviews/{FLIGHTS}",
        "/console/regulator/audit",
    ):
        page.goto(path)
        found[path] = serious_violations(page, source)
    other = page_in("en", bypass_csp=True)
    sign_in(other, live, "source")
    for path in ("/console/source/resources/new", "/console/source/statements"):
        other.goto(path)
        found[path] = serious_violations(other, source)
    assert {p: v for p, v in found.items() if v} == {}, dump(found)
