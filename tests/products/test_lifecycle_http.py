"""The review lifecycle of new versions: a listed product keeps serving while a new version is reviewed."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import UNITS, grant, listed_product, people_csv, query, upload_version

COUNT = "SELECT count(*) AS n FROM people"


def _two_months() -> bytes:
    lines = people_csv().decode().splitlines()
    return ("\n".join([lines[0]] + [line for line in lines[1:] if line.split(",")[4] != "3"]) + "\n").encode()


def test_a_new_version_is_reviewed_while_the_old_one_stays_served(market: Market) -> None:
    listed = listed_product(market)
    early = market.actor(Role.BUYER)
    grant(market, listed, early, purpose="commercial", plan="standard")
    assert query(market, early, listed.slug, COUNT).json()["rows"] == [[UNITS * 3]]

    assert upload_version(market, listed.operator, listed.slug, content=_two_months()).status_code == 201
    draft = market.client.get(f"/v1/products/{listed.slug}", headers=early.headers).json()
    assert draft["version"] == 1 and draft["status"] == "listed"
    submitted = market.client.post(f"/v1/products/{listed.slug}/submit", headers=listed.operator.headers)
    assert submitted.status_code == 200 and submitted.json()["pending_version"] == 2
    assert submitted.json()["review_due_at"] > submitted.json()["updated_at"]
    again = market.client.post(f"/v1/products/{listed.slug}/submit", headers=listed.operator.headers)
    assert again.status_code == 409
    assert query(market, early, listed.slug, COUNT).json()["rows"] == [[UNITS * 3]]
    versions = market.client.get(f"/v1/products/{listed.slug}/versions", headers=listed.regulator.headers).json()[
        "items"
    ]
    assert [(v["number"], v["status"]) for v in versions] == [(1, "listed"), (2, "in_review")]
    change = versions[1]["quality"]["tables"]["people"]["change"]  # the quality report compares with version 1
    assert change["previous_version"] == 1 and change["rows_out_delta"] == -UNITS
    assert change["columns_added"] == change["columns_removed"] == [] and change["distinct_delta"]["month"] == -1

    returned = market.client.post(
        f"/v1/products/{listed.slug}/review",
        headers=listed.regulator.headers,
        json={"decision": "return", "comment": "Explain the missing month."},
    )
    assert returned.json()["status"] == "listed" and returned.json()["version"] == 1
    market.client.post(f"/v1/products/{listed.slug}/submit", headers=listed.operator.headers)
    approved = market.client.post(
        f"/v1/products/{listed.slug}/review",
        headers=listed.regulator.headers,
        json={"decision": "approve", "comment": "Fine."},
    ).json()
    assert approved["version"] == 2 and approved["pending_version"] is None and approved["review_due_at"] is None

    late = market.actor(Role.BUYER)
    grant(market, listed, late, purpose="commercial", plan="standard")
    assert query(market, late, listed.slug, COUNT).json()["rows"] == [[UNITS * 2]]
    # The early agreement keeps the version it was made on.
    assert query(market, early, listed.slug, COUNT).json()["rows"] == [[UNITS * 3]]

    events = market.client.get(f"/v1/products/{listed.slug}/events", headers=listed.operator.headers).json()["items"]
    reasons = [e["reason"] for e in events[3:]]
    assert reasons == [
        "version 2 submitted for review",
        "version 2 returned: Explain the missing month.",
        "version 2 submitted for review",
        "version 2 approved: Fine.",
    ]
    assert all(e["actor_user_id"] and e["at"] for e in events)


def test_the_reviewed_version_is_the_one_listed_even_if_a_newer_one_is_uploaded(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    from tests.factories import create_product

    create_product(market, operator, "moving")
    upload_version(market, operator, "moving")
    market.client.post("/v1/products/moving/submit", headers=operator.headers)
    upload_version(market, operator, "moving", content=_two_months())
    approved = market.client.post(
        "/v1/products/moving/review", headers=regulator.headers, json={"decision": "approve"}
    ).json()
    assert approved["version"] == 1
