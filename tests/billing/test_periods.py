"""Billing periods of configurable length, and finance's view of overdue invoices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from billing.config import Period
from billing.models import Invoice
from market.accounts.models import Role
from market.errors import BadRequest
from tests.billing.helpers import invoices_of, run, scene
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
            update(Invoice).where(Invoice.id == invoice["id"]).values(due_at=datetime.now(UTC) - timedelta(days=1))
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
