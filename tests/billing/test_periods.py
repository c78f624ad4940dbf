"""Billing periods of configurable length, and finance's view of overdue invoices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from billing import invoices
from billing.config import Period
from billing.models import Invoice
from market import clock
from market.accounts.models import Role
from market.errors import BadRequest, Conflict
from tests.billing.helpers import acknowledge_all, invoices_of, run, scene, this_period
from tests.conftest import Market


def test_monthly_and_quarterly_periods() -> None:
    march = Period.parse("2026-03", 1)
    assert march.months == ["2026-03"] and march.end == datetime(2026, 4, 1, tzinfo=UTC)
    assert march.previous().key == "2026-02" and march.next().key == "2026-04"
    q4 = Period.parse("2026-10", 3)
    assert q4.months == ["2026-10", "2026-11", "2026-12"] and q4.end == datetime(2027, 1, 1, tzinfo=UTC)
    assert q4.next().key == "2027-01" and q4.previous().key == "2026-07"
    assert Period.containing(datetime(2026, 11, 15, tzinfo=UTC), 3).key == "2026-10"
    with pytest.raises(BadRequest):
        Period.parse("2026-11", 3)
    with pytest.raises(BadRequest):
        Period.parse("2026-00", 1)


def test_finance_sees_overdue_invoices(market: Market) -> None:
    s = scene(market)
    run(market, s.finance, finalize=True)
    assert invoices_of(market, s.finance, overdue="true") == []
    invoice = invoices_of(market, s.commercial)[0]
    with market.database.transaction() as session:
        session.execute(
            update(Invoice).where(Invoice.id == invoice["id"]).values(due_at=clock.utcnow() - timedelta(days=1))
        )
    overdue = invoices_of(market, s.finance, overdue="true")
    assert [i["id"] for i in overdue] == [invoice["id"]] and overdue[0]["overdue"] is True
    # The public-interest statement owes nothing, so it is never overdue.
    assert all(i["public_interest"] is False for i in overdue)


def test_periods_outside_the_calendar_or_in_other_digits_are_400(market: Market) -> None:
    # Before: '0000-01' and '9999-12' crashed building dates (500); '２０２６-01' was billed as a new period.
    finance = market.actor(Role.FINANCE)
    cases = {"0000-01": "period_out_of_range", "9999-12": "period_out_of_range", "２０２６-01": "invalid_period",
             "2026-01\n": "invalid_period"}  # fmt: skip
    for period, code in cases.items():
        for response in (
            market.client.post("/v1/billing/runs", headers=finance.headers, json={"period": period}),
            market.client.get("/v1/reconciliation", headers=finance.headers, params={"period": period}),
            market.client.get("/v1/reconciliation/export", headers=finance.headers, params={"period": period}),
        ):
            assert response.status_code == 400, (period, response.text)
            assert response.json()["error"]["code"] == code
    assert market.client.get("/v1/billing/periods", headers=finance.headers).json()["items"] == []


def test_a_period_is_billed_finalized_and_closed_only_after_it_ends(market: Market) -> None:
    # Before: the tour finalized and closed the running month, and `billing run --period 2027-01` billed it.
    s = scene(market)
    period = this_period()
    finance = s.finance.headers
    refused = {
        "period_not_ended": [
            market.client.post("/v1/billing/runs", headers=finance, json={"period": period}),
            market.client.post("/v1/billing/runs", headers=finance, json={"period": period, "finalize": True}),
            market.client.post(f"/v1/billing/periods/{period}/finalize", headers=finance),
            market.client.post(f"/v1/billing/periods/{period}/close", headers=finance),
        ],
        "period_in_future": [
            market.client.post("/v1/billing/runs", headers=finance, json={"period": Period.parse(period).next().key}),
            market.client.post("/v1/billing/runs", headers=finance, json={"period": "2099-01"}),
            market.client.post("/v1/billing/periods/2099-01/finalize", headers=finance),
            market.client.post("/v1/billing/periods/2099-01/close", headers=finance),
        ],
    }
    for code, responses in refused.items():
        for response in responses:
            assert response.status_code == 409 and response.json()["error"]["code"] == code, response.text
    assert market.client.get("/v1/billing/periods", headers=finance).json()["items"] == []  # refusals leave nothing
    assert invoices_of(market, s.finance) == []

    end = Period.parse(period).end
    with clock.travel_to(end - timedelta(microseconds=1)):
        last_instant = market.client.post("/v1/billing/runs", headers=finance, json={"period": period})
        assert last_instant.status_code == 409
    with clock.travel_to(end):
        billed = market.client.post("/v1/billing/runs", headers=finance, json={"period": period})
        assert billed.status_code == 200 and billed.json()["invoices_created"] == 2
        finalized = market.client.post(f"/v1/billing/periods/{period}/finalize", headers=finance)
        assert finalized.status_code == 200 and finalized.json()["finalized"] == 2
        acknowledge_all(market, s.finance, period, "unpaid until the buyer pays")
        closed = market.client.post(f"/v1/billing/periods/{period}/close", headers=finance)
        assert closed.status_code == 200 and closed.json()["status"] == "closed"


@settings(max_examples=200, deadline=None)
@given(
    year=st.integers(min_value=2000, max_value=2100),
    month=st.integers(min_value=1, max_value=12),
    offset=st.integers(min_value=-400 * 86_400_000_000, max_value=400 * 86_400_000_000),
)
def test_period_guard_follows_the_clock_for_every_period_and_instant(year: int, month: int, offset: int) -> None:
    period = Period.parse(f"{year:04d}-{month:02d}", 1)
    now = period.start + timedelta(microseconds=offset)
    with clock.travel_to(now):
        try:
            invoices.require_ended(period)
            code = None
        except Conflict as error:
            code = error.code
    expected = "period_in_future" if now < period.start else "period_not_ended" if now < period.end else None
    assert code == expected
