"""Allowed revenue: derived from the regulator's figures, warnings at 80% and 100%, tenancy, closing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market import clock
from market.accounts.models import Role
from market.compliance.allowed_revenue import warning_level
from tests.conftest import Market

FIELDS = (
    "platform_cost_minor",
    "collection_cost_minor",
    "processing_cost_minor",
    "staff_cost_minor",
    "subsidies_minor",
    "profit_minor",
    "taxes_minor",
)
amounts = st.integers(min_value=0, max_value=10**9)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(figures=st.fixed_dictionaries({name: amounts for name in FIELDS}))
def test_the_allowed_revenue_is_always_derived_from_the_figures(market: Market, figures: dict[str, int]) -> None:
    regulator = market.actor(Role.REGULATOR, org="Authority")
    operator = market.actor(Role.OPERATOR, org="Operator A")
    path = f"/v1/allowed-revenue/{operator.principal.org_id}/2031"
    recorded = market.client.put(path, headers=regulator.headers, json=figures)
    assert recorded.status_code == 200, recorded.text
    costs = sum(figures[n] for n in FIELDS[:4]) - figures["subsidies_minor"]
    expected = max(costs + figures["profit_minor"] + figures["taxes_minor"], 0)
    body = market.client.get(path, headers=operator.headers).json()
    assert (body["permitted_costs_minor"], body["allowed_minor"], body["received_minor"]) == (costs, expected, 0)
    assert body["headroom_minor"] == expected


@settings(max_examples=500, derandomize=True)
@given(received=st.integers(min_value=0, max_value=10**12), allowed=st.integers(min_value=1, max_value=10**12))
def test_warnings_start_at_80_and_100_percent(received: int, allowed: int) -> None:
    used, warning = warning_level(received, allowed)
    assert warning == ("exceeded" if received >= allowed else "approaching" if received * 10 >= allowed * 8 else "none")
    assert used == received * 10_000 // allowed


def test_only_the_regulator_records_and_operators_see_only_their_own(market: Market) -> None:
    regulator, finance = market.actor(Role.REGULATOR), market.actor(Role.FINANCE)
    mine, theirs = market.actor(Role.OPERATOR), market.actor(Role.OPERATOR)
    buyer = market.actor(Role.BUYER)
    body: dict[str, Any] = {"staff_cost_minor": 100}
    path = f"/v1/allowed-revenue/{mine.principal.org_id}/2030"
    assert market.client.put(path, headers=mine.headers, json=body).status_code == 403
    assert market.client.put(path, headers=finance.headers, json=body).status_code == 403
    assert market.client.put(path, headers=regulator.headers, json={"staff_cost_minor": -1}).status_code == 422
    not_operator = f"/v1/allowed-revenue/{buyer.principal.org_id}/2030"
    assert market.client.put(not_operator, headers=regulator.headers, json=body).status_code == 404
    assert market.client.put(path, headers=regulator.headers, json=body).status_code == 200
    assert market.client.get(path, headers=theirs.headers).status_code == 404  # like an unknown one
    assert market.client.get(path, headers=buyer.headers).status_code == 403
    assert market.client.get("/v1/allowed-revenue", headers=theirs.headers).json()["items"] == []
    assert [
        r["allowed_minor"] for r in market.client.get("/v1/allowed-revenue", headers=finance.headers).json()["items"]
    ] == [100]
    with clock.travel_to(datetime(2030, 12, 31, 23, 59, tzinfo=UTC)):
        early = market.client.post(f"{path}/close", headers=finance.headers)
        assert early.status_code == 409 and early.json()["error"]["code"] == "year_not_ended"
    with clock.travel_to(datetime(2031, 1, 1, tzinfo=UTC)):
        closed = market.client.post(f"{path}/close", headers=finance.headers)
        assert closed.status_code == 200 and closed.json()["excess_minor"] == 0
        assert market.client.post(f"{path}/close", headers=mine.headers).status_code == 403
