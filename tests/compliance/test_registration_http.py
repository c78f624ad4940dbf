"""Registration with public notice: working days, objections, withdrawal, confirmation, public lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from market import clock
from market.accounts.models import Role
from market.compliance.jobs import run_upkeep
from market.compliance.registration import add_working_days
from tests.compliance.helpers import object_to, registered_resource
from tests.conftest import Market
from tests.factories import listed_product


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    days=st.integers(min_value=0, max_value=40),
)
def test_a_notice_lasts_exactly_n_working_days(start: datetime, days: int) -> None:
    end = add_working_days(start, days)
    assert end.time() == start.time() and end >= start
    between = [start.date() + timedelta(days=d) for d in range(1, (end.date() - start.date()).days + 1)]
    assert sum(1 for day in between if day.weekday() < 5) == days
    if days:
        assert end.weekday() < 5  # it ends on a working day, never on a weekend


def test_an_upheld_objection_withdraws_and_returns_the_resource(market: Market) -> None:
    regulator, buyer = market.actor(Role.REGULATOR), market.actor(Role.BUYER)
    registration = registered_resource(market, regulator)
    objection = object_to(market, buyer, registration["id"]).json()
    assert (
        market.client.post(
            f"/v1/registrations/{registration['id']}/objections/{objection['id']}/resolve",
            headers=buyer.headers,
            json={"decision": "uphold", "resolution": "x"},
        ).json()["error"]["code"]
        == "forbidden_role"
    )
    upheld = market.client.post(
        f"/v1/registrations/{registration['id']}/objections/{objection['id']}/resolve",
        headers=regulator.headers,
        json={"decision": "uphold", "resolution": "The data belongs to another department."},
    )
    assert upheld.status_code == 200 and upheld.json()["status"] == "upheld"
    twice = market.client.post(
        f"/v1/registrations/{registration['id']}/objections/{objection['id']}/resolve",
        headers=regulator.headers,
        json={"decision": "dismiss", "resolution": "x"},
    )
    assert twice.status_code == 409
    public = market.client.get(f"/registrations/{registration['registration_code']}", params={"format": "json"})
    assert public.json()["status"] == "withdrawn"
    resources = market.client.get("/v1/resources", headers=regulator.headers).json()["items"]
    assert [r["status"] for r in resources] == ["returned"]
    assert "Objection upheld" in resources[0]["review_comment"]
    late = object_to(market, buyer, registration["id"])
    assert late.status_code == 409 and late.json()["error"]["code"] == "notice_closed"
    run_upkeep(market.database, market.settings, clock.utcnow() + timedelta(days=30))
    assert market.client.get(f"/v1/registrations/{registration['id']}", headers=buyer.headers).json()["status"] == (
        "withdrawn"
    )


def test_objections_only_during_notice_and_open_ones_block_confirmation(market: Market) -> None:
    regulator, buyer = market.actor(Role.REGULATOR), market.actor(Role.BUYER)
    with clock.travel_to(datetime(2027, 6, 4, 12, tzinfo=UTC)):  # a Friday
        registration = registered_resource(market, regulator)
        assert registration["notice_ends_at"].startswith("2027-06-11T12:00")
        assert object_to(market, buyer, registration["id"]).status_code == 201
        path = f"/v1/registrations/{registration['id']}"
        seen = {
            who: len(market.client.get(path, headers=actor.headers).json()["objections"])
            for who, actor in (("objector", buyer), ("regulator", regulator), ("other", market.actor(Role.BUYER)))
        }
        assert seen == {"objector": 1, "regulator": 1, "other": 0}  # objectors are not named to everyone
        board = market.client.get("/registrations", params={"format": "json"})  # the notice board, no sign-in
        assert [(r["registration_code"], r["open_objections"]) for r in board.json()["items"]] == [
            (registration["registration_code"], 1)
        ]
        assert registration["registration_code"] in market.client.get("/registrations").text
        clock.advance(timedelta(days=8))
        assert object_to(market, buyer, registration["id"]).json()["error"]["code"] == "notice_closed"
        assert run_upkeep(market.database, market.settings)["registrations_confirmed"] == 0  # one is still open
        blocked = market.client.post(f"/v1/registrations/{registration['id']}/confirm", headers=regulator.headers)
        assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "registration_not_confirmable"
        objection = market.client.get(f"/v1/registrations/{registration['id']}", headers=buyer.headers).json()
        market.client.post(
            f"/v1/registrations/{registration['id']}/objections/{objection['objections'][0]['id']}/resolve",
            headers=regulator.headers,
            json={"decision": "dismiss", "resolution": "Unfounded."},
        )
        confirmed = market.client.post(f"/v1/registrations/{registration['id']}/confirm", headers=regulator.headers)
        assert confirmed.status_code == 200 and confirmed.json()["confirmed_at"].startswith("2027-06-12")
    lookup = market.client.get(f"/registrations/{registration['lookup_code'].lower()}", params={"format": "json"})
    assert lookup.status_code == 200 and lookup.json()["open_objections"] == 0
    assert market.client.get("/registrations", params={"format": "json"}).json()["items"] == []  # no longer in notice
    confirmed_list = market.client.get("/v1/registrations", headers=buyer.headers, params={"status": "confirmed"})
    assert [r["id"] for r in confirmed_list.json()["items"]] == [registration["id"]]
    missing = market.client.get("/registrations/NO-SUCH-CODE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "registration_not_found"


def test_the_regulator_registers_a_product_once(market: Market) -> None:
    listed = listed_product(market)
    path = f"/v1/products/{listed.slug}/registration"
    assert market.client.post(path, headers=listed.operator.headers, json={}).status_code == 403
    opened = market.client.post(path, headers=listed.regulator.headers, json={"registration_code": "CN-11-P-0001"})
    assert opened.status_code == 201 and opened.json()["subject_kind"] == "product"
    again = market.client.post(path, headers=listed.regulator.headers, json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_registered"
