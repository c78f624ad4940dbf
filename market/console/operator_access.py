"""The operator's access and money pages: the requests queue (approve with quota, reject with a reason),
agreements with revocation, usage of its products (never buyers' SQL) and revenue statements per period."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from billing import statements
from billing.config import Period
from market.clock import utcnow
from market.console.operator import operator
from market.console.usage import daily_chart
from market.console.web import Console, ConsoleDep, check_csrf, page, redirect
from market.errors import MarketError, Unprocessable
from metering import access, agreements, service, usage

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])


def _requests_page(console: Console, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    user = operator(console)
    found = access.present(console.session, access.visible_requests(console.session, user))
    pending = sorted((r for r in found if r.status == "pending"), key=lambda r: (not r.overdue, r.created_at))
    decided = [r for r in found if r.status != "pending"]
    held = agreements.present(console.session, agreements.visible_agreements(console.session, user))
    return page(
        console,
        "operator/requests.html",
        title="Access requests",
        crumbs=(("Access requests", None),),
        pending=pending,
        decided=decided,
        agreements=held,
        errors=errors or {},
        status_code=status,
    )


@router.get("/requests")
def requests_page(console: ConsoleDep) -> Response:
    """Pending requests (overdue first) with approve and reject forms; decided ones; agreements with revoke."""
    return _requests_page(console)


def _count(text: str, most: int = 2**31 - 1) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise Unprocessable("invalid_quota", value=text[:20])
    return int(text)


@router.post("/requests/{request_id}/decision")
def decide(
    request_id: str,
    console: ConsoleDep,
    decision: Annotated[str, Form(pattern="^(approve|reject)$")],
    reason: Annotated[str, Form(max_length=5_000)] = "",
    monthly_query_quota: Annotated[str, Form(max_length=20)] = "",
    valid_days: Annotated[str, Form(max_length=6)] = "",
) -> Response:
    """Approve with a monthly quota and validity, or reject with a reason (shown to the buyer)."""
    try:
        service.decide_request(
            console.session,
            operator(console),
            request_id,
            approve=decision == "approve",
            reason=reason.strip(),
            monthly_query_quota=_count(monthly_query_quota),
            monthly_row_quota=None,
            monthly_byte_quota=None,
            valid_days=_count(valid_days, 3650),
        )
    except MarketError as error:
        console.session.rollback()
        return _requests_page(console, {request_id: console.message(error)}, error.status_code)
    return redirect(console, "/console/requests?decided=1")


@router.post("/agreements/{agreement_id}/revoke")
def revoke(agreement_id: str, console: ConsoleDep, reason: Annotated[str, Form(max_length=5_000)] = "") -> Response:
    """End an agreement on one of my products now; the buyer's later queries are refused."""
    try:
        agreements.revoke(console.session, operator(console), agreement_id, reason.strip())
    except MarketError as error:
        console.session.rollback()
        return _requests_page(console, {agreement_id: console.message(error)}, error.status_code)
    return redirect(console, "/console/requests?revoked=1#agreements")


@router.get("/sales")
def sales_page(console: ConsoleDep, period: str = "") -> Response:
    """Usage of my products per day (counts and amounts, never the SQL) and my revenue statement for a period."""
    user = operator(console)
    days = usage.daily_summary(console.session, usage.scope(console.session, user))
    chart = daily_chart(days)
    now = utcnow()
    key = period[:7] or f"{now.year:04d}-{now.month:02d}"
    error = ""
    try:
        shown = statements.statements(console.session, user, Period.parse(key))
    except MarketError as failure:
        shown, error = [], console.message(failure)
    return page(
        console,
        "operator/sales.html",
        title="Usage and revenue",
        crumbs=(("Usage and revenue", None),),
        days=sorted(days, key=lambda d: (d.day, d.product, d.charge_type), reverse=True),
        chart_json=json.dumps(chart) if chart else "",
        period=key,
        statements=shown,
        error=error,
    )
