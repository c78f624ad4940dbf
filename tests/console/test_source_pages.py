"""The source department's pages over HTTP, and the tenancy of the regulator's and source departments' pages:
another tenant's object answers as not found, another role's page as forbidden (tests/test_tenancy.py's world)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from market.accounts.models import Role
from tests.billing.helpers import this_period
from tests.conftest import Market
from tests.console.helpers import post_form, sign_in
from tests.test_tenancy import World, build_world

RESOURCE = {
    "title": "Bus tap-ins",
    "description": "Every tap-in on city buses.",
    "zone": "transport",
    "region": "CN-11",
    "classification": "general",
    "fields": "card_id, stop, time",
    "update_frequency": "daily",
    "time_span": "2020-2030",
    "contact": "data@bus.example",
    "legal_basis": "Municipal open data rules, art. 12",
}


def test_source_registers_answers_returned_comments_and_the_regulator_registers(market: Market) -> None:
    source = market.actor(Role.SOURCE)
    regulator = market.actor(Role.REGULATOR)
    mine = sign_in(market, source)
    mine.headers["Accept-Language"] = "en"
    new = "/console/source/resources/new"
    missing = post_form(mine, new, new, {**RESOURCE, "title": "", "region": "CN-11"})
    assert missing.status_code == 422 and 'id="title-error"' in missing.text  # type: ignore[attr-defined]
    bad_region = post_form(mine, new, new, {**RESOURCE, "region": "Beijing"})
    assert 'id="region-error"' in bad_region.text and 'value="Bus tap-ins"' in bad_region.text  # type: ignore[attr-defined]
    sent = post_form(mine, new, new, RESOURCE)
    assert sent.status_code == 303, sent.text  # type: ignore[attr-defined]
    resource_id = sent.headers["location"].split("/")[-1].split("?")[0]  # type: ignore[attr-defined]
    stored = market.client.get(f"/v1/resources/{resource_id}", headers=source.headers).json()
    assert stored["catalogue"] == {
        "fields": ["card_id", "stop", "time"],
        "update_frequency": "daily",
        "time_span": "2020-2030",
        "contact": "data@bus.example",
        "legal_basis": "Municipal open data rules, art. 12",
    }

    reviewer = sign_in(market, regulator)
    reviewer.headers["Accept-Language"] = "en"
    assert "Bus tap-ins" in reviewer.get("/console/regulator/resources").text
    page = f"/console/regulator/resources/{resource_id}"
    no_comment = post_form(reviewer, page, f"{page}/review", {"decision": "return", "comment": ""})
    assert no_comment.status_code == 422 and 'id="comment-error"' in no_comment.text  # type: ignore[attr-defined]
    returned = post_form(reviewer, page, f"{page}/review", {"decision": "return", "comment": "Name the legal basis."})
    assert returned.status_code == 303  # type: ignore[attr-defined]

    listing = mine.get("/console/source/resources").text
    assert "Name the legal basis." in listing and f"/console/source/resources/{resource_id}/revise" in listing
    revise = f"/console/source/resources/{resource_id}/revise"
    form = mine.get(revise).text
    assert 'value="card_id, stop, time"' in form and "Name the legal basis." in form
    answered = post_form(mine, revise, revise, {**RESOURCE, "legal_basis": "Data Security Law, art. 42"})
    assert answered.status_code == 303  # type: ignore[attr-defined]
    again = post_form(mine, revise, revise, RESOURCE)
    assert again.status_code == 409  # type: ignore[attr-defined]  # pending again: nothing to answer

    duplicate = post_form(
        reviewer, page, f"{page}/review", {"decision": "register", "registration_code": "not a code!"}
    )
    assert duplicate.status_code == 422 and 'id="registration_code-error"' in duplicate.text  # type: ignore[attr-defined]
    registered = post_form(
        reviewer, page, f"{page}/review", {"decision": "register", "registration_code": "CN-11-TR-2031-0007"}
    )
    assert registered.status_code == 303  # type: ignore[attr-defined]
    detail = mine.get(f"/console/source/resources/{resource_id}").text
    assert "CN-11-TR-2031-0007" in detail and "Registration and public notice" in detail
    assert re.search(r"/registrations/[A-Z2-9]{12}", detail)


@pytest.fixture
def world(market: Market, billed_period_clock: None) -> World:
    built = build_world(market)
    client, ids = market.client, built.ids
    regulator, source_a = built.actors["regulator"], built.actors["source_a"]
    review = {"decision": "register", "comment": "ok", "registration_code": "CN-11-TR-2031-0001"}
    reviewed = client.post(f"/v1/resources/{ids['resource_a']}/review", headers=regulator.headers, json=review)
    assert reviewed.status_code == 200, reviewed.text
    linked = client.patch(
        "/v1/products/alpha", headers=built.alpha.operator.headers, json={"resources": [ids["resource_a"]]}
    )
    assert linked.status_code == 200, linked.text
    assert source_a.principal.org_id
    return built


def _statements_are_the_source_own(market: Market, world: World) -> None:
    """Source A sees alpha (derived from its resource) and its statement; source B neither."""
    period = this_period()
    source_a = sign_in(market, world.actors["source_a"])
    page = source_a.get("/console/source/statements", params={"period": period}).text
    derived = page[page.find('id="derived"') :]
    assert "alpha" in derived and "CN-11-TR-2031-0001" in derived and "beta" not in derived
    statements = page[page.find('id="statements"') :]
    assert world.actors["source_a"].principal.org_name in statements
    document = source_a.get("/console/source/statements/document", params={"period": period})
    assert document.status_code == 200 and world.actors["source_a"].principal.org_name in document.text
    source_b = sign_in(market, world.actors["source_b"])
    other = source_b.get("/console/source/statements", params={"period": period}).text
    assert 'id="derived"' not in other and world.actors["source_a"].principal.org_name not in other
    assert 'id="statements"' not in other


PAGES: list[tuple[str, str, str, int]] = [
    # (actor, method, path, status): another tenant's object is not found; another role's page is forbidden.
    ("source_b", "GET", "/console/source/resources/{resource_a}", 404),
    ("source_b", "GET", "/console/source/resources/{resource_a}/revise", 404),
    ("source_b", "POST", "/console/source/resources/{resource_a}/revise", 404),
    ("source_a", "GET", "/console/regulator/resources/{resource_b}", 404),
    ("operator_b", "GET", "/console/regulator/authorisations/{authorisation_a}", 404),
    ("operator_a", "GET", "/console/regulator/authorisations/{authorisation_a}/suspend", 403),
    ("operator_a", "POST", "/console/regulator/authorisations/{authorisation_a}/revoke", 403),
    ("operator_b", "GET", "/console/regulator/reviews/alpha-draft", 404),
    ("operator_a", "POST", "/console/regulator/reviews/alpha-draft/decision", 403),
    ("buyer_b", "GET", "/console/regulator/requests/{public_request_a}", 404),
    ("operator_a", "POST", "/console/regulator/requests/{public_request_a}/decision", 404),
    ("buyer_a", "GET", "/console/regulator/dashboard", 403),
    ("finance", "GET", "/console/regulator/dashboard.csv", 403),
    ("operator_a", "GET", "/console/regulator/audit", 403),
    ("buyer_a", "POST", "/console/regulator/audit/{query_b}/flag", 403),
    ("operator_a", "GET", "/console/regulator/reviews", 403),
    ("buyer_a", "GET", "/console/regulator/authorisations/new", 403),
    ("source_a", "POST", "/console/regulator/authorisations/new", 403),
    ("operator_a", "GET", "/console/source/statements", 403),
    ("buyer_a", "GET", "/console/source/resources/new", 403),
    ("regulator", "GET", "/console/source/resources/no-such-resource", 404),
    ("regulator", "GET", "/console/regulator/reviews/no-such-product", 404),
    ("regulator", "GET", "/console/regulator/authorisations/aut_unknown", 404),
]


def test_statements_and_pages_keep_tenancy_and_roles(market: Market, world: World) -> None:
    _statements_are_the_source_own(market, world)
    clients: dict[str, Any] = {}
    wrong: list[str] = []
    bodies = {
        "decision": "approve",
        "reason": "x",
        "comment": "x",
        "title": "x",
        "zone": "transport",
        "region": "CN-11",
    }
    for actor, method, path, status in PAGES:
        if actor not in clients:
            clients[actor] = sign_in(market, world.actors[actor])
        client = clients[actor]
        url = path.format(**world.ids)
        if method == "GET":
            response = client.get(url)
        else:
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
            assert token is not None
            response = client.post(url, data={**bodies, "csrf_token": token.group(1)})
        leaked = actor != "source_a" and world.actors["source_a"].principal.org_name in response.text
        if response.status_code != status or leaked:
            wrong.append(f"{actor} {method} {url}: {response.status_code}, wanted {status}")
    assert wrong == []
