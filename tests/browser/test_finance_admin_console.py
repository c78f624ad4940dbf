"""Finance and the admin in Chromium, in zh-CN and in en: a period from usage to close through finance's pages
(billing run, finalize, a partial bank transfer, the buyer's card payment against localstripe, a transfer no
invoice explains, reconciliation with that mismatch acknowledged, close), and the admin's user and key flows.

The module runs its own live server, with Stripe pointed at localstripe; the buyer's usage is made through
the API (the buyer's pages have their own browser test)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from market import clock
from tests.billing.conftest import WEBHOOK_SECRET, localstripe_url  # noqa: F401 - the session's localstripe
from tests.browser.conftest import DEMO_START, Live, dump, require_axe, serious_violations, serving
from tests.conftest import DemoTemplates

SQL = "SELECT origin, count(*) AS flights FROM flights GROUP BY origin ORDER BY origin"
PERIODS = {"zh-CN": "2031-05", "en": "2031-07"}
BUYER = "Swift Logistics Ltd."


@pytest.fixture(scope="module")
def live(
    demo_templates: DemoTemplates,
    tmp_path_factory: pytest.TempPathFactory,
    localstripe_url: str,  # noqa: F811
) -> Iterator[Live]:
    """The demo marketplace served in a thread (the test moves the shared clock), with card payments."""
    data_dir = tmp_path_factory.mktemp("live-finance") / "data"
    stripe = {
        "stripe_api_key": "sk_test_console",
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": WEBHOOK_SECRET,
    }
    with demo_templates.copy(data_dir, start=DEMO_START, **stripe) as demo, serving(demo) as url:
        yield Live(url, demo.keys, demo.logins, demo.database, demo.settings)


def sign_in(page: Page, login: dict[str, str]) -> None:
    page.goto("/login")
    page.fill("input[name=email]", login["email"])
    page.fill("input[name=password]", login["password"])
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile("/console/"))


def money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


@pytest.mark.parametrize("language", list(PERIODS))
def test_a_period_from_usage_to_close_in_finance_pages(live: Live, page_in: Any, language: str) -> None:
    period = PERIODS[language]
    end = datetime(int(period[:4]), int(period[5:]) + 1, 1, tzinfo=UTC)
    clock.set_start(end - timedelta(hours=6))
    for _ in range(2):
        ran = live.api("buyer_commercial", "POST", "/v1/queries", json={"product": "nyc-flights-2013", "sql": SQL})
        assert ran.status_code == 200, ran.text
    clock.set_start(end + timedelta(hours=1))

    finance = page_in(language)
    sign_in(finance, live.logins["finance"])
    expect(finance).to_have_url(re.compile("/console/finance/periods"))
    expect(finance.locator("html")).to_have_attribute("lang", language)
    finance.locator(f"#periods a[href='/console/finance/periods/{period}']").click()
    expect(finance.locator("#period-state .status-ended")).to_be_visible()
    finance.locator("#run-billing").click()
    expect(finance.locator("#done")).to_be_visible()
    expect(finance.locator("#period-state .status-billed")).to_be_visible()
    finance.locator("#finalize").click()
    expect(finance.locator("#period-state .status-finalized")).to_be_visible()

    # The commercial buyer's invoice, found with the filters; half of it arrives by bank transfer.
    invoice = next(
        i
        for i in live.api("finance", "GET", "/v1/invoices", params={"period": period}).json()["items"]
        if i["buyer"]["name"] == BUYER
    )
    finance.goto("/console/finance/invoices")
    finance.select_option("#state", "finalized")
    finance.select_option("#buyer", invoice["buyer"]["id"])
    finance.locator("form.filters button[type=submit]").click()
    finance.locator(f"#invoice-table a[href='/console/finance/invoices/{invoice['id']}']").click()
    half = invoice["total_minor"] // 2
    finance.fill("#amount", money(half))
    finance.fill("#reference", f"ICBC-{language}-001")
    finance.locator("#transfer-form button[type=submit]").click()
    expect(finance.locator("#done")).to_be_visible()
    expect(finance.locator("#invoice-paid")).to_contain_text(money(half))
    expect(finance.locator("#payment-table")).to_contain_text(f"ICBC-{language}-001")

    # The buyer pays the rest by card on its invoice page (localstripe).
    buyer = page_in(language)
    sign_in(buyer, live.logins["buyer_commercial"])
    buyer.goto(f"/console/invoices/{invoice['id']}")
    buyer.fill("#card_number", "4242 4242 4242 4242")
    buyer.select_option("#exp_month", "12")
    buyer.select_option("#exp_year", index=15)
    buyer.fill("#cvc", "123")
    buyer.locator("form[action$='/pay'] button[type=submit]").click()
    expect(buyer).to_have_url(re.compile(r"\?paid=1"))

    finance.goto("/console/finance/payments")
    expect(finance.locator("#payments tr", has=finance.locator(".status-succeeded")).first).to_be_visible()
    expect(finance.locator("#payments")).to_contain_text("pi_")
    finance.select_option("#buyer_org_id", invoice["buyer"]["id"])
    finance.fill("#u-amount", "5.00")
    finance.fill("#u-reference", f"ICBC-{language}-002")
    finance.fill("#received_on", f"{period}-15")
    finance.locator("#unapplied-form button[type=submit]").click()
    expect(finance.locator("#done")).to_be_visible()

    # Reconciliation names the stray transfer; closing is refused until finance acknowledges every mismatch.
    finance.goto(f"/console/finance/periods/{period}")
    expect(finance.locator("#mismatch-table")).to_contain_text("paid_with_no_invoice")
    expect(finance.locator("#mismatch-table a[href^='/console/finance/payments#']").first).to_be_visible()
    finance.locator("#close").click()
    expect(finance.locator(".alert")).to_contain_text(period)
    acknowledge = finance.locator("#mismatch-table form")
    while acknowledge.count():
        acknowledge.first.locator("input[name=note]").fill("Buyer paid twice; refund agreed for next month")
        acknowledge.first.locator("button[type=submit]").click()
        expect(finance.locator("#done")).to_be_visible()
    expect(finance.locator("#open-count")).to_have_text("0")
    with finance.expect_download() as download:
        finance.locator(f"a[href='/console/finance/periods/{period}/reconciliation.xlsx']").click()
    assert download.value.suggested_filename == f"reconciliation-{period}.xlsx"
    finance.locator("#close").click()
    expect(finance.locator("#period-state .status-closed")).to_be_visible()
    expect(finance.locator("#run-billing")).to_have_count(0)

    finance.goto("/console/finance/charts")
    expect(finance.locator("#chart-trend svg, #chart-trend canvas").first).to_be_visible()
    expect(finance.locator("#trend-table")).to_contain_text(period)


@pytest.mark.parametrize("language", list(PERIODS))
def test_admin_adds_a_user_issues_and_revokes_a_key_and_deactivates(live: Live, page_in: Any, language: str) -> None:
    admin = page_in(language)
    sign_in(admin, live.logins["admin"])
    expect(admin).to_have_url(re.compile("/console/admin/users"))
    email = f"{secrets.token_hex(4)}@platform.example"
    platform = admin.locator("#u-org option", has_text="Marketplace Platform").first.get_attribute("value")
    assert platform
    admin.select_option("#u-org", platform)
    admin.fill("#u-name", "Qian Lei")
    admin.fill("#u-email", email)
    admin.select_option("#u-role", "buyer")
    admin.fill("#u-password", "short")
    admin.locator("#user-form button[type=submit]").click()
    expect(admin.locator("#role-error, #password-error").first).to_be_visible()
    expect(admin.locator("#u-email")).to_have_value(email)
    admin.select_option("#u-role", "finance")
    admin.fill("#u-password", "a long enough password")
    admin.locator("#user-form button[type=submit]").click()
    expect(admin.locator("#user-role")).to_be_visible()

    admin.fill("#label", "reporting")
    admin.locator("#key-form button[type=submit]").click()
    key = admin.locator("#issued-key").inner_text().strip()
    assert key.startswith("mk_")
    assert httpx.get(live.url + "/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["role"] == "finance"
    admin.select_option("#role", "admin")
    admin.locator("form[action$='/role'] button[type=submit]").click()
    expect(admin.locator("#done")).to_be_visible()
    expect(admin.locator("#issued-key")).to_have_count(0)

    admin.goto(f"/console/admin/keys?prefix={key[:10]}")
    expect(admin.locator("#keys tbody tr")).to_have_count(1)
    admin.locator("#keys button[type=submit]").click()
    expect(admin.locator("#keys .status-revoked")).to_be_visible()
    assert httpx.get(live.url + "/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401

    admin.goto("/console/admin/users")
    admin.locator(f"#users a:text-is('{email}')").click()
    admin.locator("#deactivate").click()
    expect(admin.locator("#user-state .status-deactivated")).to_be_visible()
    admin.goto("/console/admin/activity")
    expect(admin.locator("#activity tbody tr").nth(4)).to_be_visible()
    expect(admin.locator("#activity")).to_contain_text(email)


def test_finance_and_admin_pages_pass_axe(live: Live, page_in: Any) -> None:
    source = require_axe()
    found: dict[str, Any] = {}
    for role, paths in (
        (
            "finance",
            (
                "/console/finance/periods",
                f"/console/finance/periods/{PERIODS['zh-CN']}",
                "/console/finance/invoices",
                "/console/finance/payments",
                "/console/finance/ledger",
                "/console/finance/statements",
                "/console/finance/charts",
            ),
        ),
        ("admin", ("/console/admin/orgs", "/console/admin/users", "/console/admin/keys", "/console/admin/activity")),
    ):
        page = page_in("zh-CN", bypass_csp=True)
        sign_in(page, live.logins[role])
        for path in paths:
            page.goto(path)
            found[path] = serious_violations(page, source)
    assert {p: v for p, v in found.items() if v} == {}, dump(found)
