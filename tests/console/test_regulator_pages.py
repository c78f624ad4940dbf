"""The regulator's pages over HTTP: authorisations (grant, suspend with its impact), resource registry, product
review, public-interest requests, the audit log and the dashboard with its CSV; each through the services."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

from market import clock
from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.console.helpers import post_form, sign_in
from tests.factories import (
    PEOPLE_POLICY,
    K,
    authorise,
    create_product,
    grant,
    listed_product,
    query,
    upload_version,
)

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"
GRANTS = "/console/regulator/authorisations"


def _regulator(market: Market) -> tuple[Actor, Any]:
    regulator = market.actor(Role.REGULATOR)
    client = sign_in(market, regulator)
    client.headers["Accept-Language"] = "en"
    return regulator, client


def _grant_form(operator: Actor, **fields: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "operator": operator.principal.org_id,
        "zones": ["transport"],
        "regions": ["CN-11"],
        "other_regions": "CN-31-15",
        "scenarios": "route-planning, transport-research",
        "valid_until": (clock.utcnow() + timedelta(days=400)).date().isoformat(),
        "cap_transport_per_query": "1.50",
        "cap_transport_per_gb": "0.125",
        "cap_transport_monthly": "3,000",
    }
    return {**form, **fields}


def test_grant_form_creates_the_authorisation_with_caps_in_minor_units(market: Market) -> None:
    regulator, client = _regulator(market)
    operator = market.actor(Role.OPERATOR)
    form_page = client.get(f"{GRANTS}/new")
    assert form_page.status_code == 200 and operator.principal.org_name in form_page.text
    assert 'id="region-CN-11-05"' in form_page.text  # the region tree
    created = post_form(client, f"{GRANTS}/new", f"{GRANTS}/new", _grant_form(operator))
    assert created.status_code == 303, created.text  # type: ignore[attr-defined]
    target = created.headers["location"]  # type: ignore[attr-defined]
    detail = client.get(target)
    assert detail.status_code == 200 and "CN-31-15" in detail.text and "route-planning" in detail.text
    grants = market.client.get("/v1/authorisations", headers=regulator.headers).json()["items"]
    assert len(grants) == 1
    made = grants[0]
    assert made["regions"] == ["CN-11", "CN-31-15"] and made["scenarios"] == ["route-planning", "transport-research"]
    assert made["fee_caps"][0]["max_per_query_minor"] == 150
    assert made["fee_caps"][0]["max_monthly_fee_minor"] == 300_000
    assert float(made["fee_caps"][0]["max_per_gb_minor"]) == 12.5


def test_grant_form_mistakes_come_back_next_to_their_field(market: Market) -> None:
    regulator, client = _regulator(market)
    operator = market.actor(Role.OPERATOR)
    no_zone = post_form(client, f"{GRANTS}/new", f"{GRANTS}/new", _grant_form(operator, zones=[]))
    assert no_zone.status_code == 422  # type: ignore[attr-defined]
    assert 'id="zones-error"' in no_zone.text and 'value="CN-31-15"' in no_zone.text  # type: ignore[attr-defined]
    bad_amount = post_form(
        client, f"{GRANTS}/new", f"{GRANTS}/new", _grant_form(operator, cap_transport_per_query="1.505")
    )
    assert 'id="fee_caps-error"' in bad_amount.text  # type: ignore[attr-defined]
    past = post_form(client, f"{GRANTS}/new", f"{GRANTS}/new", _grant_form(operator, valid_until="2001-01-01"))
    assert 'id="valid_until-error"' in past.text  # type: ignore[attr-defined]
    bad_region = post_form(client, f"{GRANTS}/new", f"{GRANTS}/new", _grant_form(operator, other_regions="beijing"))
    assert 'id="regions-error"' in bad_region.text  # type: ignore[attr-defined]
    assert market.client.get("/v1/authorisations", headers=regulator.headers).json()["items"] == []


def test_suspending_shows_the_products_and_agreements_affected_then_delists(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER, org="Harbour Research Institute")
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    client = sign_in(market, listed.regulator)
    client.headers["Accept-Language"] = "en"
    grant_id = market.client.get("/v1/authorisations", headers=listed.regulator.headers).json()["items"][0]["id"]
    confirm = client.get(f"{GRANTS}/{grant_id}/suspend")
    assert confirm.status_code == 200
    assert listed.slug in confirm.text and "Harbour Research Institute" in confirm.text
    assert "1 listed products will be delisted and 1 agreements will stop being served" in confirm.text
    empty = post_form(client, f"{GRANTS}/{grant_id}/suspend", f"{GRANTS}/{grant_id}/suspend", {"reason": " "})
    assert empty.status_code == 422  # type: ignore[attr-defined]
    assert (
        market.client.get(f"/v1/products/{listed.slug}", headers=listed.regulator.headers).json()["status"] == "listed"
    )
    done = post_form(
        client, f"{GRANTS}/{grant_id}/suspend", f"{GRANTS}/{grant_id}/suspend", {"reason": "Audit pending."}
    )
    assert done.status_code == 303  # type: ignore[attr-defined]
    product = market.client.get(f"/v1/products/{listed.slug}", headers=listed.regulator.headers).json()
    assert product["status"] == "delisted"
    history = client.get(f"{GRANTS}/{grant_id}").text
    assert "Audit pending." in history and "Reinstate" in history
    assert client.get(f"{GRANTS}/{grant_id}/explode").status_code == 422


def test_review_page_shows_audit_diff_and_lineage_and_decides(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator, client = _regulator(market)
    assert authorise(market, operator, regulator=regulator).status_code == 201
    assert create_product(market, operator, "people-trips").status_code == 201
    assert upload_version(market, operator, "people-trips").status_code == 201
    assert market.client.post("/v1/products/people-trips/submit", headers=operator.headers).status_code == 200
    queue = client.get("/console/regulator/reviews")
    assert queue.status_code == 200 and "people-trips" in queue.text
    review = client.get("/console/regulator/reviews/people-trips")
    assert review.status_code == 200
    assert 'id="diff"' in review.text and "min_group_size" in review.text  # never listed: all new
    assert "Irreversibility audit" in review.text
    page = "/console/regulator/reviews/people-trips"
    no_comment = post_form(client, page, f"{page}/decision", {"decision": "return", "comment": ""})
    assert no_comment.status_code == 422 and 'id="comment-error"' in no_comment.text  # type: ignore[attr-defined]
    above = post_form(client, page, f"{page}/fee-standard", {"per_query": "100000", "per_gb": "", "monthly": ""})
    assert above.status_code == 422 and 'id="fee_standard-error"' in above.text  # type: ignore[attr-defined]
    huge = post_form(client, page, f"{page}/fee-standard", {"per_query": "9" * 18, "per_gb": "", "monthly": ""})
    assert huge.status_code == 422 and 'id="fee_standard-error"' in huge.text  # type: ignore[attr-defined]
    fine = post_form(client, page, f"{page}/fee-standard", {"per_query": "2", "per_gb": "100", "monthly": "50"})
    assert fine.status_code == 303, fine.text  # type: ignore[attr-defined]
    fees = market.client.get("/v1/products/people-trips/fees", headers=regulator.headers).json()
    assert fees["fee_standard"]["per_query_minor"] == "200"
    approved = post_form(client, page, f"{page}/decision", {"decision": "approve", "comment": "Audit clean."})
    assert approved.status_code == 303  # type: ignore[attr-defined]
    assert market.client.get("/v1/products/people-trips", headers=regulator.headers).json()["status"] == "listed"
    assert "people-trips" not in client.get("/console/regulator/reviews").text
    no_reason = post_form(client, page, f"{page}/delist", {"reason": ""})
    assert no_reason.status_code == 422 and 'id="delist_reason-error"' in no_reason.text  # type: ignore[attr-defined]
    delisted = post_form(client, page, f"{page}/delist", {"reason": "Source withdrew consent."})
    assert delisted.status_code == 303  # type: ignore[attr-defined]
    product = market.client.get("/v1/products/people-trips", headers=regulator.headers).json()
    assert product["status"] == "delisted"


def test_a_new_version_of_a_listed_product_is_diffed_against_the_listed_one(market: Market) -> None:
    listed = listed_product(market)
    client = sign_in(market, listed.regulator)
    policy = {**PEOPLE_POLICY, "min_group_size": K + 5}
    assert upload_version(market, listed.operator, listed.slug, policy=policy).status_code == 201
    assert market.client.post(f"/v1/products/{listed.slug}/submit", headers=listed.operator.headers).status_code == 200
    review = client.get(f"/console/regulator/reviews/{listed.slug}").text
    row = re.search(r"<code>min_group_size</code></td><td><del>(\d+)</del></td><td><ins>(\d+)</ins>", review)
    assert row is not None and row.groups() == (str(K), str(K + 5)), review[review.find('id="diff"') :][:2000]


def test_public_interest_requests_put_overdue_first_and_take_a_decision(market: Market) -> None:
    listed = listed_product(market)
    early = market.actor(Role.BUYER, org="Early Institute")
    late = market.actor(Role.BUYER, org="Late Institute")
    body = {"product": listed.slug, "plan": "public", "purpose": "public_welfare", "scenario": "analysis"}
    with clock.travel_to(clock.utcnow() - timedelta(days=12)):
        market.client.post("/v1/access-requests", headers=early.headers, json={**body, "justification": "a"})
    made = market.client.post("/v1/access-requests", headers=late.headers, json={**body, "justification": "b"})
    client = sign_in(market, listed.regulator)
    client.headers["Accept-Language"] = "en"
    queue = client.get("/console/regulator/requests").text
    assert queue.index("Early Institute") < queue.index("Late Institute")
    assert "status-overdue" in queue[: queue.index("Late Institute")]
    page = f"/console/regulator/requests/{made.json()['id']}"
    rejected = post_form(client, page, f"{page}/decision", {"decision": "reject", "reason": ""})
    assert rejected.status_code == 422 and 'id="reason-error"' in rejected.text  # type: ignore[attr-defined]
    approved = post_form(
        client, page, f"{page}/decision", {"decision": "approve", "monthly_query_quota": "500", "valid_days": "90"}
    )
    assert approved.status_code == 303  # type: ignore[attr-defined]
    agreements = market.client.get("/v1/agreements", headers=late.headers).json()["items"]
    assert agreements[0]["monthly_query_quota"] == 500


def _queries(market: Market) -> Any:
    listed = listed_product(market)
    public = market.actor(Role.BUYER, org="Civic Lab")
    paying = market.actor(Role.BUYER, org="Swift Freight")
    grant(market, listed, public, purpose="public_governance", plan="public")
    grant(market, listed, paying, purpose="commercial", plan="standard")
    assert query(market, public, listed.slug, SQL).status_code == 200
    assert query(market, paying, listed.slug, SQL.replace("count(*)", "count(*) ")).status_code == 200
    return listed, paying


def _records(html: str) -> str:
    """The audit page's list of records (the search form above it names every buyer)."""
    return html[html.find('id="records"') :] if 'id="records"' in html else ""


def test_audit_log_searches_by_purpose_shows_both_sqls_and_follows_flags_up(market: Market) -> None:
    listed, paying = _queries(market)
    client = sign_in(market, listed.regulator)
    client.headers["Accept-Language"] = "en"
    found = _records(
        client.get("/console/regulator/audit", params={"purpose": "commercial", "product": listed.slug}).text
    )
    assert "Swift Freight" in found and "Civic Lab" not in found
    assert "SQL as sent" in found and "SQL as run" in found
    by_buyer = _records(client.get("/console/regulator/audit", params={"buyer": paying.principal.org_id}).text)
    assert "Swift Freight" in by_buyer and "Civic Lab" not in by_buyer
    future = (clock.utcnow() + timedelta(days=3)).date().isoformat()
    assert "No query matches" in client.get("/console/regulator/audit", params={"from": future}).text
    unknown = client.get("/console/regulator/audit", params={"product": "no-such"})
    assert unknown.status_code == 404 and "no-such" in unknown.text
    record = re.search(r'id="record-(qry_[^"]+)"', found)
    assert record is not None
    page = "/console/regulator/audit"
    flagged = post_form(client, page, f"{page}/{record.group(1)}/flag", {"reason": "Repeated narrow filters."})
    assert flagged.status_code == 303  # type: ignore[attr-defined]
    open_flags = _records(client.get(page, params={"flagged": "1"}).text)
    assert "Repeated narrow filters." in open_flags and "Civic Lab" not in open_flags
    flag_id = re.search(r"/console/regulator/audit/flags/(flg_[^/]+)/resolve", open_flags)
    assert flag_id is not None
    resolved = post_form(client, page, f"{page}/flags/{flag_id.group(1)}/resolve", {"resolution": "Benign."})
    assert resolved.status_code == 303  # type: ignore[attr-defined]
    assert "Benign." in client.get(page, params={"flagged": "1"}).text


def test_dashboard_draws_queries_by_purpose_and_downloads_each_figure(market: Market) -> None:
    listed, _ = _queries(market)
    client = sign_in(market, listed.regulator)
    client.headers["Accept-Language"] = "en"
    board = client.get("/console/regulator/dashboard")
    assert board.status_code == 200
    assert 'id="data-queries"' in board.text and "public_governance" in board.text
    assert '<strong id="share">50%</strong>' in board.text
    rows = list(csv.DictReader(io.StringIO(client.get("/console/regulator/dashboard.csv?figure=queries").text)))
    by_purpose = {r["purpose"]: r for r in rows}
    assert by_purpose["public_governance"]["queries"] == "1" and by_purpose["public_governance"]["amount_minor"] == "0"
    assert by_purpose["commercial"]["public_interest"] == "false" and int(by_purpose["commercial"]["amount_minor"]) > 0
    zones = client.get("/console/regulator/dashboard.csv?figure=zones")
    assert zones.headers["content-disposition"].startswith("attachment")
    assert list(csv.reader(io.StringIO(zones.text)))[1] == ["transport", "1", "0", "0"]
    revenue = list(csv.DictReader(io.StringIO(client.get("/console/regulator/dashboard.csv?figure=revenue").text)))
    assert [r["operator"] for r in revenue] == [listed.operator.principal.org_name]
    assert client.get("/console/regulator/dashboard.csv?figure=nothing").status_code == 422
    assert client.get("/console/regulator/dashboard?from=2030-01-01&to=2020-01-01").status_code == 422


def test_registrations_show_objections_which_the_regulator_resolves_then_confirms(market: Market) -> None:
    source = market.actor(Role.SOURCE)
    regulator, client = _regulator(market)
    objector = market.actor(Role.BUYER, org="Neighbourhood Watch")
    body = {"title": "Tap-ins", "zone": "transport", "region": "CN-11", "classification": "general"}
    resource = market.client.post("/v1/resources", headers=source.headers, json=body).json()
    review = {"decision": "register", "registration_code": "CN-11-TR-2031-0042"}
    reviewed = market.client.post(f"/v1/resources/{resource['id']}/review", headers=regulator.headers, json=review)
    assert reviewed.status_code == 200, reviewed.text
    listed = market.client.get("/v1/registrations", headers=regulator.headers).json()["items"]
    registration_id = listed[0]["id"]
    objection = market.client.post(
        f"/v1/registrations/{registration_id}/objections", headers=objector.headers, json={"reason": "Stale data."}
    )
    assert objection.status_code == 201, objection.text
    page = "/console/regulator/registrations"
    shown = client.get(page).text
    assert "CN-11-TR-2031-0042" in shown and "Stale data." in shown
    action = f"{page}/{registration_id}/objections/{objection.json()['id']}/resolve"
    dismissed = post_form(client, page, action, {"decision": "dismiss", "resolution": "Refreshed daily."})
    assert dismissed.status_code == 303  # type: ignore[attr-defined]
    assert "Refreshed daily." in client.get(page).text
    early = post_form(client, page, f"{page}/{registration_id}/confirm", {})
    assert early.status_code == 409  # type: ignore[attr-defined]  # the notice has not ended
    with clock.travel_to(clock.utcnow() + timedelta(days=10)):
        later = sign_in(market, regulator)  # the morning's session has ended
        confirmed = post_form(later, page, f"{page}/{registration_id}/confirm", {})
        assert confirmed.status_code == 303  # type: ignore[attr-defined]
    state = market.client.get(f"/v1/registrations/{registration_id}", headers=regulator.headers).json()
    assert state["status"] == "confirmed"


def test_allowed_revenue_is_recorded_in_yuan_derived_and_a_past_year_closed(market: Market) -> None:
    regulator, client = _regulator(market)
    operator = market.actor(Role.OPERATOR, org="Harbour Operations")
    page = "/console/regulator/allowed-revenue"
    year = clock.utcnow().year - 1
    figures = {
        "operator": operator.principal.org_id,
        "year": str(year),
        "platform_cost_minor": "300,000",
        "collection_cost_minor": "50000",
        "processing_cost_minor": "80000.50",
        "staff_cost_minor": "120000",
        "subsidies_minor": "100000",
        "profit_minor": "45000",
        "taxes_minor": "4999.50",
    }
    wrong = post_form(client, page, page, {**figures, "taxes_minor": "lots"})
    assert wrong.status_code == 422 and 'id="figures-error"' in wrong.text  # type: ignore[attr-defined]
    recorded = post_form(client, page, page, figures)
    assert recorded.status_code == 303  # type: ignore[attr-defined]
    row = market.client.get(f"/v1/allowed-revenue/{operator.principal.org_id}/{year}", headers=regulator.headers)
    assert row.json()["allowed_minor"] == 50_000_000 and row.json()["processing_cost_minor"] == 8_000_050
    shown = client.get(page, params={"year": year}).text
    assert "Harbour Operations" in shown and "500,000.00" in shown
    closed = post_form(client, page, f"{page}/{operator.principal.org_id}/{year}/close", {})
    assert closed.status_code == 303  # type: ignore[attr-defined]
    again = post_form(client, page, page, figures)
    assert again.status_code == 409  # type: ignore[attr-defined]  # a closed year's figures cannot change


def test_the_regulator_generates_and_publishes_its_disclosure(market: Market) -> None:
    listed = listed_product(market)
    client = sign_in(market, listed.regulator)
    client.headers["Accept-Language"] = "en"
    year = clock.utcnow().year
    page = "/console/regulator/disclosures"
    before = client.get(page, params={"year": year}).text
    assert 'id="missing"' in before and "regulator_disclosure" in before
    made = post_form(client, page, page, {"year": str(year), "kind": "regulator_disclosure"})
    assert made.status_code == 303  # type: ignore[attr-defined]
    operator = listed.operator.principal.org_id
    post_form(client, page, page, {"year": str(year), "kind": "operating_report", "operator": operator})
    shown = client.get(page, params={"year": year}).text
    report_id = re.search(r"/console/regulator/disclosures/(dis\w+|[a-z]+_\w+)\"", shown)
    assert report_id is not None, shown
    assert client.get(f"{page}/{report_id.group(1)}").status_code == 200
    publish = re.search(r'action="(/console/regulator/disclosures/[^"]+/publish)"', shown)
    assert publish is not None and shown.count("/publish") == 1  # only its own report is the regulator's to publish
    assert post_form(client, page, publish.group(1), {}).status_code == 303  # type: ignore[attr-defined]
    public = market.client.get("/disclosures")
    assert public.status_code == 200 and str(year) in public.text
