"""The regulator's dashboard: queries by purpose over time (free public-interest against paid), revenue per
operator against its allowed revenue, products per zone, overdue reviews and the disclosure
deadline. Each figure is drawn (ECharts, vendored), shown as a table and downloadable as CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from market.clock import utcnow
from market.compliance import disclosure, supervision
from market.console.filters import day
from market.console.web import Console, ConsoleDep, page
from market.errors import Unprocessable
from metering.models import Purpose

router = APIRouter(prefix="/console/regulator", include_in_schema=False)

DEFAULT_DAYS = 30
MAX_DAYS = 366
FIGURES = ("queries", "revenue", "zones", "overdue")


def _window(since: str, until: str) -> tuple[date, date]:
    """The dashboard's days: the last 30 by default, at most a year, in order."""
    end = day(until, "to") or utcnow().date()
    start = day(since, "from") or end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start or (end - start).days >= MAX_DAYS:
        raise Unprocessable("console_invalid_window", days=MAX_DAYS)
    return start, end


def _year(text: str) -> int:
    if not text:
        return utcnow().year
    if not text.isdigit() or not 2000 <= int(text) <= 2100:
        raise Unprocessable("console_invalid_year", value=text[:10])
    return int(text)


def queries_chart(rows: list[supervision.PurposeDay], start: date, end: date) -> dict[str, Any]:
    """Answered queries per day, one stacked series per purpose (every day of the window on the axis)."""
    days = [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
    by_purpose: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        by_purpose[row.purpose][row.day.isoformat()] += row.queries
    return {
        "type": "bar",
        "stack": True,
        "x": days,
        "series": [
            {"key": p.value, "data": [by_purpose[p.value].get(d, 0) for d in days]}
            for p in Purpose
            if p.value in by_purpose
        ],
    }


def revenue_chart(rows: list[supervision.OperatorRevenue]) -> dict[str, Any]:
    """Revenue received, and allowed revenue per operator, in currency units."""
    return {
        "type": "bar",
        "stack": False,
        "x": [r.operator for r in rows],
        "series": [
            {"key": "received", "data": [r.received_minor / 100 for r in rows]},
            {"key": "allowed", "data": [(r.allowed_minor or 0) / 100 for r in rows]},
        ],
    }


def zones_chart(rows: list[supervision.ZoneProducts]) -> dict[str, Any]:
    return {
        "type": "bar",
        "stack": True,
        "x": [r.zone for r in rows],
        "series": [
            {"key": "listed", "data": [r.listed for r in rows]},
            {"key": "in_review", "data": [r.in_review for r in rows]},
            {"key": "other", "data": [r.other for r in rows]},
        ],
    }


def _figures(console: Console, since: str, until: str, year: str) -> dict[str, Any]:
    start, end = _window(since, until)
    chosen = _year(year)
    queries = supervision.queries_by_purpose(console.session, console.user, start, end)
    return {
        "start": start,
        "end": end,
        "year": chosen,
        "queries": queries,
        "revenue": supervision.operator_revenue(console.session, console.user, chosen),
        "zones": supervision.products_per_zone(console.session, console.user),
        "overdue": supervision.overdue_reviews(console.session, console.user),
    }


@router.get("/dashboard")
def dashboard_page(console: ConsoleDep, since: str = "", to: str = "", year: str = "") -> Response:
    """The figures for a window of days (queries) and a year (revenue), with their charts and CSV links."""
    since = console.request.query_params.get("from", since)
    figures = _figures(console, since, to, year)
    public, paid = supervision.public_interest_share(figures["queries"])
    last_year = utcnow().year - 1
    return page(
        console,
        "regulator/dashboard.html",
        title="Supervision dashboard",
        crumbs=(("Dashboard", None),),
        **figures,
        public=public,
        paid=paid,
        share=round(100 * public / (public + paid)) if public + paid else None,
        pending_resources=supervision.pending_resources(console.session, console.user),
        disclosure=disclosure.status(console.session, console.user, last_year),
        charts={
            "queries": json.dumps(queries_chart(figures["queries"], figures["start"], figures["end"])),
            "revenue": json.dumps(revenue_chart(figures["revenue"])),
            "zones": json.dumps(zones_chart(figures["zones"])),
        },
        query=f"from={figures['start'].isoformat()}&to={figures['end'].isoformat()}&year={figures['year']}",
    )


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if isinstance(value, Decimal):  # exact, without an exponent: 0.0000001, not 1E-7
        value = format(value.normalize(), "f")
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def figure_rows(figure: str, figures: dict[str, Any]) -> list[list[object]]:
    """One figure as a header row and data rows; amounts in minor units with their currency."""
    if figure == "queries":
        header: list[object] = ["day", "purpose", "public_interest", "queries", "amount_minor", "currency"]
        rows: list[list[object]] = [
            [r.day.isoformat(), r.purpose, str(r.public_interest).lower(), r.queries, r.amount_minor, r.currency]
            for r in figures["queries"]
        ]
    elif figure == "revenue":
        header = ["year", "operator_id", "operator", "received_minor", "allowed_minor"]
        header += ["used_basis_points", "warning", "currency"]
        rows = [
            [
                r.year,
                r.operator_org_id,
                r.operator,
                r.received_minor,
                r.allowed_minor,
                r.used_basis_points,
                r.warning,
                r.currency,
            ]
            for r in figures["revenue"]
        ]
    elif figure == "zones":
        header = ["zone", "listed", "in_review", "other"]
        rows = [[r.zone, r.listed, r.in_review, r.other] for r in figures["zones"]]
    else:
        header = ["kind", "subject", "who", "due_at", "days_overdue"]
        rows = [[r.kind, r.subject, r.who, r.due_at.isoformat(), r.days_overdue] for r in figures["overdue"]]
    return [header, *rows]


@router.get("/dashboard.csv")
def dashboard_csv(console: ConsoleDep, figure: str = "queries", to: str = "", year: str = "") -> Response:
    """One of the dashboard's figures as CSV (queries, revenue, zones or overdue), for the same window and year."""
    if figure not in FIGURES:
        raise Unprocessable("console_unknown_figure", figure=figure[:20], figures=", ".join(FIGURES))
    figures = _figures(console, console.request.query_params.get("from", ""), to, year)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in figure_rows(figure, figures):
        writer.writerow([_cell(v) for v in row])
    name = f"{figure}-{figures['start'].isoformat()}-{figures['end'].isoformat()}.csv"
    if figure == "revenue":
        name = f"revenue-{figures['year']}.csv"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
