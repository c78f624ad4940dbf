"""The buyer's usage: daily charts by product and charge type, quota and cap left, CSV export."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from market.console.access import held_agreements
from market.console.web import ConsoleDep, page
from metering import usage
from metering.schemas import DailyUsageOut

router = APIRouter(prefix="/console", include_in_schema=False)


def daily_chart(days: list[DailyUsageOut]) -> dict[str, Any] | None:
    """Queries per day, one stacked series per product and charge type."""
    if not days:
        return None
    axis = sorted({d.day.isoformat() for d in days})
    series: dict[str, dict[str, int]] = defaultdict(dict)
    for d in days:
        series[f"{d.product} · {d.charge_type}"][d.day.isoformat()] = d.queries
    return {
        "type": "bar",
        "stack": True,
        "x": axis,
        "series": [{"name": name, "data": [by_day.get(x, 0) for x in axis]} for name, by_day in sorted(series.items())],
    }


@router.get("/usage")
def usage_page(console: ConsoleDep) -> Response:
    """Daily usage by product and charge type, with what is left of each agreement's quota and cap."""
    buyer = console.buyer()
    days = usage.daily_summary(console.session, usage.scope(console.session, buyer))
    standing = held_agreements(console)
    chart = daily_chart(days)
    return page(
        console,
        "usage.html",
        title="Usage",
        crumbs=(("Usage", None),),
        days=sorted(days, key=lambda d: (d.day, d.product, d.charge_type), reverse=True),
        standing=standing,
        chart_json=json.dumps(chart) if chart else "",
    )


@router.get("/usage.csv")
def usage_csv(console: ConsoleDep) -> Response:
    """The buyer's usage records as CSV (the same export as the API's)."""
    buyer = console.buyer()
    return Response(
        usage.to_csv(console.session, buyer, usage.scope(console.session, buyer)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"', "Cache-Control": "no-store"},
    )
