"""con-reg2's pages over HTTP: the buyer's DP query page (dry run, chosen epsilon, the answer's mechanism and
bounds, the agreement's budget), the regulator revoking one agreement after a confirmation, the privacy
budgets and their CSV, revenue shares for the regulator and finance, and objections by any signed-in
organisation; with the tenancy of each page route."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from market import clock
from market.accounts.models import Role
from market.console.regulator import shares as shares_page
from market.errors import MarketError
from metering.models import PrivacyBudget
from tests.conftest import Actor, Market
from tests.console.helpers import post_form, sign_in
from tests.factories import Listed, dp_policy, grant, listed_product

SLUG = "people-dp"
SQL = "SELECT region, count(*) AS n, sum(amount) AS total FROM people GROUP BY region"
QUERY = "/console/query"
AGREEMENTS = "/console/regulator/agreements"
BUDGETS = "/console/regulator/privacy-budgets"
SHARES = "/console/revenue-shares"
NOTICES = "/console/notices"


def _dp_market(market: Market) -> tuple[Listed, Actor, Any]:
    listed = listed_product(market, SLUG, policy=dp_policy())
    buyer = market.actor(Role.BUYER, org="Harbour Research Institute")
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=100)
    client = sign_in(market, buyer)
    client.headers["Accept-Language"] = "en"
    return listed, buyer, client


def _ask(client: Any, **fields: str) -> Any:
    return post_form(client, f"{QUERY}?product={SLUG}", QUERY, {"product": SLUG, "sql": SQL, **fields})


def _spent(market: Market) -> int:
    with market.database.transaction() as session:
        return sum(b.spent_nano for b in session.scalars(select(PrivacyBudget)))


def test_buyer_dry_runs_then_spends_the_epsilon_it_chose(market: Market) -> None:
    _, buyer, client = _dp_market(market)
    shown = client.get(f"{QUERY}?product={SLUG}").text
    assert 'id="epsilon"' in shown and 'min="0.1"' in shown and 'max="2.0"' in shown and 'id="dry-run"' in shown
    assert "10 in all, 0 spent, 10 left" in shown

    dry = _ask(client, dry_run="1", epsilon="0.5")
    assert dry.status_code == 200, dry.text
    assert 'id="dry-run-result"' in dry.text and "would spend epsilon 0.5" in dry.text
    assert re.search(r"<code>n</code></td><td>± [0-9.]+", dry.text), dry.text  # a bound per noisy column
    assert _spent(market) == 0
    assert market.client.get("/v1/usage", headers=buyer.headers).json()["items"] == []  # nothing recorded

    ran = _ask(client, epsilon="0.5")
    assert ran.status_code == 200, ran.text
    assert 'id="mechanism"' in ran.text and "gaussian" in ran.text and "cost: epsilon 0.5" in ran.text
    assert 'id="result-table"' in ran.text and _spent(market) > 0
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]
    assert agreement["privacy_budget"]["spent"]["epsilon"] == pytest.approx(0.5, rel=1e-3)
    access = client.get("/console/access").text
    assert "10 in all, 0.5 spent, 9.9822 left" in access  # epsilons compose in rho, not by subtraction

    too_much = _ask(client, epsilon="5")
    assert too_much.status_code == 422 and 'id="epsilon-error"' in too_much.text
    assert 'aria-invalid="true"' in too_much.text and 'id="sql-error"' not in too_much.text
    not_a_number = _ask(client, epsilon="lots")
    assert not_a_number.status_code == 422 and "is not an epsilon" in not_a_number.text


def test_a_threshold_product_has_no_privacy_controls(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    client = sign_in(market, buyer)
    shown = client.get(QUERY).text
    assert 'id="epsilon"' not in shown and 'id="dry-run"' not in shown
    assert "exact answers (no privacy budget)" in client.get("/console/access", headers={"Accept-Language": "en"}).text


def test_regulator_revokes_an_agreement_after_seeing_what_it_affects(market: Market) -> None:
    listed, buyer, buyer_client = _dp_market(market)
    assert _ask(buyer_client, epsilon="1").status_code == 200
    regulator = sign_in(market, listed.regulator)
    regulator.headers["Accept-Language"] = "en"
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]["id"]
    listing = regulator.get(AGREEMENTS).text
    assert f'href="{AGREEMENTS}/{agreement}"' in listing and "Harbour Research Institute" in listing
    assert regulator.get(f"{AGREEMENTS}?status=revoked").text.count('id="agreement-') == 0

    confirm = regulator.get(f"{AGREEMENTS}/{agreement}/revoke")
    assert confirm.status_code == 200 and 'id="impact"' in confirm.text
    assert "Harbour Research Institute can no longer query people-dp" in confirm.text
    assert "1 queries" in confirm.text and "epsilon 9.9297" in confirm.text
    action = f"{AGREEMENTS}/{agreement}/revoke"
    empty = post_form(regulator, action, action, {"reason": "  "})
    assert empty.status_code == 422 and 'id="reason-error"' in empty.text  # type: ignore[attr-defined]
    assert market.client.get(f"/v1/agreements/{agreement}", headers=buyer.headers).json()["status"] == "active"

    done = post_form(regulator, action, action, {"reason": "Purpose no longer met."})
    assert done.status_code == 303  # type: ignore[attr-defined]
    after = market.client.get(f"/v1/agreements/{agreement}", headers=buyer.headers).json()
    assert after["status"] == "revoked" and after["revoked_by_role"] == "regulator"
    assert after["revoked_reason"] == "Purpose no longer met."
    page = regulator.get(done.headers["location"]).text  # type: ignore[attr-defined]
    assert 'id="revocation"' in page and "Purpose no longer met." in page and 'id="revoke"' not in page
    notes = market.client.get("/v1/notifications", headers=buyer.headers).json()["items"]
    assert any(n["kind"] == "agreement_stopped" and "Purpose no longer met." in n["body"] for n in notes)
    assert _ask(buyer_client).status_code == 403
    again = post_form(regulator, f"{AGREEMENTS}/{agreement}", action, {"reason": "Twice."})
    assert again.status_code == 409  # type: ignore[attr-defined]  # only an active agreement is revoked


def test_privacy_budgets_per_agreement_and_version_cap_download_as_csv(market: Market) -> None:
    listed, _, buyer_client = _dp_market(market)
    other = market.actor(Role.BUYER, org="Coastal Analytics")
    grant(market, listed, other, purpose="public_welfare", plan="public")
    assert _ask(buyer_client, epsilon="2").status_code == 200
    regulator = sign_in(market, listed.regulator)
    regulator.headers["Accept-Language"] = "en"
    shown = regulator.get(BUDGETS).text
    assert 'id="caps"' in shown and 'id="budgets"' in shown and "Coastal Analytics" in shown
    assert 'href="/console/regulator/privacy-budgets"' in regulator.get("/console/regulator/audit").text
    rows = list(csv.DictReader(io.StringIO(regulator.get(f"{BUDGETS}.csv?figure=agreements").text)))
    assert {r["buyer"] for r in rows} == {"Harbour Research Institute", "Coastal Analytics"}
    spent = {r["buyer"]: float(r["spent_epsilon"]) for r in rows}
    assert spent["Harbour Research Institute"] == pytest.approx(2.0, rel=1e-3) and spent["Coastal Analytics"] == 0
    assert all(float(r["budget_epsilon"]) == 10.0 for r in rows)
    caps = list(csv.DictReader(io.StringIO(regulator.get(f"{BUDGETS}.csv?figure=versions").text)))
    assert len(caps) == 1 and caps[0]["agreements"] == "2" and float(caps[0]["cap_epsilon"]) == 50.0
    assert float(caps[0]["spent_epsilon"]) == pytest.approx(2.0, rel=1e-3)
    assert regulator.get(f"{BUDGETS}.csv?figure=everything").status_code == 422


def test_revenue_shares_are_edited_in_percent_and_must_add_up(market: Market) -> None:
    listed = listed_product(market)
    source = market.actor(Role.SOURCE, org="City Transport Bureau")
    regulator = sign_in(market, listed.regulator)
    regulator.headers["Accept-Language"] = "en"
    overview = regulator.get(SHARES).text
    assert 'id="shares-people-trips"' in overview and "the default split" in overview
    form = f"{SHARES}/{listed.slug}"
    assert 'value="80"' in regulator.get(form).text
    short = post_form(regulator, form, form, {"operator": "70", "platform": "20"})
    assert short.status_code == 422 and 'id="shares-error"' in short.text  # type: ignore[attr-defined]
    assert "they add up to 9000" in short.text and 'value="70"' in short.text  # type: ignore[attr-defined]
    bad = post_form(regulator, form, form, {"operator": "seventy", "platform": "30"})
    assert bad.status_code == 422 and 'id="operator-error"' in bad.text  # type: ignore[attr-defined]
    fields = {"operator": "62.5", "platform": "20", "source_0": source.principal.org_id, "source_share_0": "17.5"}
    saved = post_form(regulator, form, form, fields)
    assert saved.status_code == 303  # type: ignore[attr-defined]
    shares = market.client.get(f"/v1/products/{listed.slug}/revenue-shares", headers=listed.regulator.headers).json()
    points = {s["party"]: s["basis_points"] for s in shares["shares"]}
    assert points == {"operator": 6250, "platform": 2000, "source": 1750}
    assert "City Transport Bureau: 17.5%" in regulator.get(form).text

    finance = sign_in(market, market.actor(Role.FINANCE))
    assert finance.get(form).status_code == 200
    assert 'href="/console/revenue-shares"' in finance.get("/console/finance/periods").text
    assert regulator.get(f"{SHARES}/no-such-product").status_code == 404


def _in_notice(market: Market) -> tuple[str, str]:
    source = market.actor(Role.SOURCE)
    regulator = market.actor(Role.REGULATOR)
    body = {"title": "Tap-ins", "zone": "transport", "region": "CN-11", "classification": "general"}
    resource = market.client.post("/v1/resources", headers=source.headers, json=body).json()
    review = {"decision": "register", "registration_code": "CN-11-TR-2031-0042"}
    reviewed = market.client.post(f"/v1/resources/{resource['id']}/review", headers=regulator.headers, json=review)
    assert reviewed.status_code == 200, reviewed.text
    found = market.client.get("/v1/registrations", headers=regulator.headers).json()["items"][0]
    return found["id"], found["lookup_code"]


def test_any_signed_in_organisation_objects_and_follows_the_outcome(market: Market) -> None:
    registration, lookup = _in_notice(market)
    regulator = market.actor(Role.REGULATOR)
    assert "/console/notices?code=CN-11-TR-2031-0042" in market.client.get(f"/registrations/{lookup}").text
    operator = sign_in(market, market.actor(Role.OPERATOR, org="Harbour Operations"))
    operator.headers["Accept-Language"] = "en"
    shown = operator.get(f"{NOTICES}?code=CN-11-TR-2031-0042").text
    assert f'id="registration-{registration}"' in shown and f'for="reason-{registration}"' in shown
    action = f"{NOTICES}/{registration}/objections"
    empty = post_form(operator, NOTICES, action, {"reason": ""})
    assert empty.status_code == 422 and f'id="reason-{registration}-error"' in empty.text  # type: ignore[attr-defined]
    filed = post_form(operator, NOTICES, action, {"reason": "The fields list omits the card type."})
    assert filed.status_code == 303  # type: ignore[attr-defined]
    mine = operator.get(NOTICES).text
    assert "The fields list omits the card type." in mine and "status-open" in mine

    buyer = sign_in(market, market.actor(Role.BUYER, org="Neighbourhood Watch"))
    buyer.headers["Accept-Language"] = "en"
    assert "The fields list omits the card type." not in buyer.get(NOTICES).text  # another organisation's
    assert post_form(buyer, NOTICES, action, {"reason": "Stale."}).status_code == 303  # type: ignore[attr-defined]

    objection = next(
        o
        for o in market.client.get(f"/v1/registrations/{registration}", headers=regulator.headers).json()["objections"]
        if o["reason"].startswith("The fields")
    )
    resolved = market.client.post(
        f"/v1/registrations/{registration}/objections/{objection['id']}/resolve",
        headers=regulator.headers,
        json={"decision": "dismiss", "resolution": "The card type is not collected."},
    )
    assert resolved.status_code == 200, resolved.text
    outcome = operator.get(NOTICES).text
    assert "status-dismissed" in outcome and "The card type is not collected." in outcome
    with clock.travel_to(clock.utcnow() + timedelta(days=10)):
        later = sign_in(market, market.actor(Role.BUYER))
        assert f'id="registration-{registration}"' not in later.get(NOTICES).text
        closed = post_form(later, NOTICES, action, {"reason": "Too late."})
        assert closed.status_code == 409  # type: ignore[attr-defined]


def test_page_routes_of_another_role_or_tenant_answer_403_or_404(market: Market) -> None:
    listed, buyer, buyer_client = _dp_market(market)
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]["id"]
    operator_b = sign_in(market, market.actor(Role.OPERATOR, org="Other Operator"))
    regulator = sign_in(market, listed.regulator)
    gets = (
        AGREEMENTS,
        f"{AGREEMENTS}/{agreement}",
        f"{AGREEMENTS}/{agreement}/revoke",
        BUDGETS,
        f"{BUDGETS}.csv",
        SHARES,
        f"{SHARES}/{listed.slug}",
    )
    for client in (buyer_client, operator_b):
        for path in gets:
            assert client.get(path).status_code in (403, 404), path
        revoke = post_form(client, NOTICES, f"{AGREEMENTS}/{agreement}/revoke", {"reason": "mine now"})
        assert revoke.status_code in (403, 404)  # type: ignore[attr-defined]
        shares = post_form(client, NOTICES, f"{SHARES}/{listed.slug}", {"operator": "100", "platform": "0"})
        assert shares.status_code in (403, 404)  # type: ignore[attr-defined]
    assert market.client.get(f"/v1/agreements/{agreement}", headers=buyer.headers).json()["status"] == "active"
    for path in gets:  # the rightful role reaches every one of them: the table tests tenancy, not typos
        assert regulator.get(path).status_code == 200, path
    assert regulator.get(f"{AGREEMENTS}/agr_missing").status_code == 404


@given(st.integers(min_value=0, max_value=10_000))
def test_a_share_shown_in_percent_reads_back_as_the_same_basis_points(points: int) -> None:
    assert shares_page.basis_points(shares_page.percent(points), "operator") == points


@given(st.text(max_size=8))
def test_a_typed_share_is_whole_basis_points_from_0_to_10000_or_refused(text: str) -> None:
    try:
        points = shares_page.basis_points(text, "operator")
    except MarketError as error:
        assert error.code == "console_invalid_percent"
    else:
        assert isinstance(points, int) and 0 <= points <= 10_000


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_budgets_are_shown_as_exact_decimals_on_the_buyers_and_the_regulators_pages(
    market: Market, language: str
) -> None:
    policy = dp_policy(
        agreement_epsilon=0.3, version_epsilon_cap=0.9, query_epsilon=0.1, min_query_epsilon=0.1, max_query_epsilon=0.2
    )
    listed = listed_product(market, SLUG, policy=policy)
    buyer = market.actor(Role.BUYER, org="Harbour Research Institute")
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=100)
    client = sign_in(market, buyer)
    client.headers["Accept-Language"] = language
    assert _ask(client, epsilon="0.1").status_code == 200
    regulator = sign_in(market, listed.regulator)
    regulator.headers["Accept-Language"] = language
    access = client.get("/console/access").text
    budgets = regulator.get(BUDGETS).text
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]["id"]
    detail = regulator.get(f"{AGREEMENTS}/{agreement}").text
    for page in (access, budgets, detail):
        assert "0.0000001" in page  # delta, never 1e-07
        assert not re.search(r"(?<![\w-])\d+(\.\d+)?[eE]-\d+(?![\w-])", page)  # no exponent anywhere
        assert "0.30000000000000004" not in page and "0.19999999999999998" not in page
    spent_left = {"en": "0.3 in all, 0.1 spent, 0.2", "zh-CN": "共 0.3，已用 0.1，剩余 0.2"}[language]
    assert spent_left in access and spent_left in detail
    assert "0.1" in access and "0.2" in access  # what one query may spend
    assert "<td>0.9</td>" in budgets and "<td>0.3</td>" in budgets  # the version's cap, the agreement's budget
    rows = list(csv.DictReader(io.StringIO(regulator.get(f"{BUDGETS}.csv?figure=agreements").text)))
    assert rows[0]["delta"] == "0.0000001" and rows[0]["budget_epsilon"] == "0.3"
