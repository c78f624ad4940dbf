"""con-reg2's pages in Chromium, in both languages: a buyer's dry run and chosen epsilon on the DP demo product,
its agreement's budget; the regulator revoking one agreement after the confirmation, the privacy budgets and
their CSV; revenue shares edited in percent; an objection filed during a public notice and its outcome. Steps of
other roles (approvals, registrations) go through the API."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Live, dump, require_axe, serious_violations, set_sql, sign_in
from tests.factories import PLANS

LANGUAGES = ("zh-CN", "en")
DP = "nyc-flights-2013-dp"
SQL = "SELECT origin, count(*) AS n FROM flights GROUP BY origin ORDER BY origin"
BUYER_OF = {"zh-CN": "buyer_public", "en": "buyer_commercial"}
EPSILON_OF = {"zh-CN": "0.37", "en": "0.41"}
"""A distinct epsilon per run: the same query at the same cost would be a free stored repeat."""
WAIT = 60_000
"""Milliseconds a query may take to answer on a loaded machine (the page shows its progress meanwhile)."""


def _dp_spent(live: Live, who: str) -> float:
    items = live.api(who, "GET", "/v1/agreements", params={"limit": 200}).json()["items"]
    found = [a for a in items if a["product"] == DP and a["status"] == "active"]
    assert found, dump(items)
    return float(found[0]["privacy_budget"]["spent"]["epsilon"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_buyer_dry_runs_then_spends_the_chosen_epsilon(live: Live, page_in: Any, language: str) -> None:
    who = BUYER_OF[language]
    before = _dp_spent(live, who)
    page = page_in(language)
    sign_in(page, live, who)
    page.goto(f"/console/query?product={DP}")
    expect(page.locator("#epsilon")).to_have_attribute("max", re.compile(r"\d"))
    expect(page.locator("#budget-left")).to_be_visible()
    set_sql(page, SQL)
    page.fill("#epsilon", EPSILON_OF[language])
    page.locator("#dry-run").click()
    expect(page.locator("#dry-run-result")).to_contain_text(EPSILON_OF[language], timeout=WAIT)
    expect(page.locator("#error-bounds tbody tr")).to_have_count(2)
    expect(page.locator("#error-bounds")).to_contain_text("±")
    assert _dp_spent(live, who) == before  # the dry run spent nothing

    set_sql(page, SQL)
    page.fill("#epsilon", EPSILON_OF[language])
    page.locator("#run").click()
    expect(page.locator("#mechanism")).to_contain_text("gaussian", timeout=WAIT)
    expect(page.locator("#result-table tbody tr")).to_have_count(3)
    expect(page.locator("#answer-bounds")).to_contain_text("±")
    after = _dp_spent(live, who)
    assert after > before, (before, after)

    page.goto("/console/access")
    expect(page.locator(".privacy-budget").first).to_be_visible()
    expect(page.locator("main")).to_contain_text(str(round(after, 4)))


def _new_buyer_with_dp_agreement(live: Live, name: str) -> str:
    """A new buyer (admin), its public-interest request on the DP product (its API key) approved by the regulator."""
    org = live.api("admin", "POST", "/v1/orgs", json={"name": name, "kind": "buyer"})
    assert org.status_code == 201, org.text
    body = {"org_id": org.json()["id"], "name": name, "email": f"{secrets.token_hex(4)}@buyer.example", "role": "buyer"}
    user = live.api("admin", "POST", "/v1/users", json=body)
    assert user.status_code == 201, user.text
    key = live.api("admin", "POST", f"/v1/users/{user.json()['id']}/keys", json={"label": "test"}).json()["key"]
    request = {
        "product": DP,
        "plan": "public-interest",
        "purpose": "public_welfare",
        "scenario": "transport-research",
        "justification": "Ridership study.",
    }
    made = httpx.post(
        live.url + "/v1/access-requests", headers={"Authorization": f"Bearer {key}"}, json=request, timeout=60
    )
    assert made.status_code == 201, made.text
    decided = live.api(
        "regulator",
        "POST",
        f"/v1/access-requests/{made.json()['id']}/decision",
        json={"decision": "approve", "reason": "fine"},
    )
    assert decided.status_code == 200, decided.text
    agreements = httpx.get(live.url + "/v1/agreements", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return str(agreements.json()["items"][0]["id"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_regulator_revokes_one_agreement_and_reads_the_budgets(live: Live, page_in: Any, language: str) -> None:
    name = f"Harbour Mobility Lab {language} {secrets.token_hex(2)}"
    agreement = _new_buyer_with_dp_agreement(live, name)
    page = page_in(language)
    sign_in(page, live, "regulator")
    page.goto("/console/regulator/privacy-budgets")
    expect(page.locator("#caps")).to_contain_text(DP)
    expect(page.locator(f"#budget-{agreement}")).to_contain_text(name)
    with page.expect_download() as download:
        page.locator("#csv-agreements").click()
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115 - the download's temporary file
    assert text.startswith("agreement_id,product,version,buyer") and agreement in text

    page.goto("/console/regulator/audit")
    page.locator("#audit-links a[href='/console/regulator/agreements']").click()
    page.locator(f"#agreement-{agreement} a").click()
    page.locator("#revoke").click()
    expect(page.locator("#impact")).to_contain_text(name)
    page.locator("#confirm").click()
    expect(page.locator("#reason-error")).to_be_visible()
    expect(page.locator("#reason")).to_have_attribute("aria-invalid", "true")
    page.fill("#reason", "The study ended early.")
    page.locator("#confirm").click()
    expect(page).to_have_url(re.compile(r"revoked=1"))
    expect(page.locator("#revocation")).to_contain_text("The study ended early.")
    state = live.api("regulator", "GET", f"/v1/agreements/{agreement}").json()
    assert state["status"] == "revoked" and state["revoked_reason"] == "The study ended early.", dump(state)


def _new_product(live: Live, slug: str) -> None:
    body = {"slug": slug, "title": f"Trips {slug}", "zone": "transport", "region": "CN-11", "plans": PLANS}
    created = live.api("operator", "POST", "/v1/products", json=body)
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_revenue_shares_are_edited_in_percent(live: Live, page_in: Any, language: str) -> None:
    slug = f"shares-{language.lower()}-{secrets.token_hex(2)}"
    _new_product(live, slug)
    sources = live.api("admin", "GET", "/v1/orgs", params={"limit": 200}).json()["items"]
    source = next(o for o in sources if o["kind"] == "source")
    page = page_in(language)
    sign_in(page, live, "finance" if language == "en" else "regulator")
    page.goto("/console/revenue-shares")
    page.locator(f"#shares-{slug} a").click()
    expect(page.locator("#operator")).to_have_value("80")
    page.fill("#operator", "70")
    page.locator("#save").click()
    expect(page.locator("#shares-error")).to_be_visible()
    expect(page.locator("#operator")).to_have_value("70")
    page.select_option("#source_0", source["id"])
    page.fill("#source_share_0", "10")
    page.locator("#save").click()
    expect(page).to_have_url(re.compile(r"saved=1"))
    expect(page.locator("#current")).to_contain_text("10%")
    shares = live.api("regulator", "GET", f"/v1/products/{slug}/revenue-shares").json()["shares"]
    assert {s["party"]: s["basis_points"] for s in shares} == {"operator": 7000, "platform": 2000, "source": 1000}


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_objection_during_the_notice_and_its_outcome(live: Live, page_in: Any, language: str) -> None:
    body = {"title": f"Ferry boardings {secrets.token_hex(3)}", "zone": "transport", "region": "CN-11"}
    resource = live.api("source", "POST", "/v1/resources", json={**body, "classification": "general"})
    assert resource.status_code == 201, resource.text
    code = f"CN-11-TR-2031-{secrets.token_hex(2).upper()}"
    review = {"decision": "register", "registration_code": code}
    assert (
        live.api("regulator", "POST", f"/v1/resources/{resource.json()['id']}/review", json=review).status_code == 200
    )
    page = page_in(language)
    page.goto(f"/registrations/{code}")
    page.locator(f"a[href='/console/notices?code={code}']").click()
    page.wait_for_url(re.compile("/login"))
    page.fill("input[name=email]", live.logins["operator"]["email"])
    page.fill("input[name=password]", live.logins["operator"]["password"])
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile("/console/notices"))
    card = page.locator("#notices li.card")
    expect(card).to_have_count(1)
    card.locator("button[type=submit]").click()
    expect(page.locator("#notices .field-error")).to_be_visible()
    page.locator("#notices textarea").fill("The boarding counts include staff.")
    page.locator("#notices button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"filed=1"))
    mine = page.locator("#my-objections")
    expect(mine).to_contain_text("The boarding counts include staff.")
    expect(mine.locator(".status-open").first).to_be_visible()

    found = live.api("regulator", "GET", "/v1/registrations", params={"limit": 200}).json()["items"]
    registration = next(r for r in found if r["registration_code"] == code)
    objection = registration["objections"][0]["id"]
    resolved = live.api(
        "regulator",
        "POST",
        f"/v1/registrations/{registration['id']}/objections/{objection}/resolve",
        json={"decision": "dismiss", "resolution": "Staff trips are excluded at source."},
    )
    assert resolved.status_code == 200, resolved.text
    page.reload()
    expect(mine).to_contain_text("Staff trips are excluded at source.")
    expect(mine.locator(".status-dismissed").first).to_be_visible()


def test_con_reg2_pages_pass_axe_with_no_serious_violation(live: Live, page_in: Any) -> None:
    source = require_axe()
    found: dict[str, Any] = {}
    agreement = _new_buyer_with_dp_agreement(live, f"Axe Lab {secrets.token_hex(2)}")
    regulator = page_in("zh-CN", bypass_csp=True)
    sign_in(regulator, live, "regulator")
    for path in (
        "/console/regulator/agreements",
        f"/console/regulator/agreements/{agreement}/revoke",
        "/console/regulator/privacy-budgets",
        "/console/revenue-shares",
        f"/console/revenue-shares/{DP}",
    ):
        regulator.goto(path)
        found[path] = serious_violations(regulator, source)
    buyer = page_in("en", bypass_csp=True)
    sign_in(buyer, live, "buyer_public")
    for path in (f"/console/query?product={DP}", "/console/access", "/console/notices"):
        buyer.goto(path)
        found[path] = serious_violations(buyer, source)
    assert {p: v for p, v in found.items() if v} == {}, dump(found)
