"""Billing periods of configurable length, and finance's view of overdue invoices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from billing.config import Period
from billing.models import Invoice
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
