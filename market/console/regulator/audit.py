"""The regulator's audit log: every query, searched by product, buyer, purpose and date, with the SQL as sent and
as run; flags for follow-up and their resolution."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from market.accounts import service as accounts
from market.accounts.models import OrgKind
from market.console.filters import ListFilters, day, day_range
from market.console.web import Console, ConsoleDep, check_csrf, page, redirect
from market.errors import BadRequest, MarketError, Unprocessable
from market.pagination import cut, decode_cursor
from metering import audit
from metering.models import Purpose
from metering.repository import UsageFilter
from metering.schemas import AuditRecordOut

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/audit"
PAGE = 25
FILTERS = {"product": 100, "buyer": 40, "purpose": 30, "from": 10, "to": 10, "flagged": 1}
"""The search's fields and their lengths (kept in the URL)."""


def _filters(console: Console, values: dict[str, str]) -> UsageFilter:
    since, until = day_range(day(values["from"], "from"), day(values["to"], "to"))
    purpose = values["purpose"]
    if purpose and purpose not in {p.value for p in Purpose}:
        raise Unprocessable("invalid_purpose", purposes=", ".join(p.value for p in Purpose))
    return audit.audit_filter(
        console.session,
        console.user,
        product_slug=values["product"] or None,
        buyer_org_id=values["buyer"] or None,
        purpose=Purpose(purpose) if purpose else None,
        since=since,
        until=until,
        flagged_only=values["flagged"] == "1",
    )


def _buyers(console: Console) -> list[tuple[str, str]]:
    return [(o.id, o.name) for o in accounts.list_orgs(console.session, console.user) if o.kind == OrgKind.BUYER.value]


@router.get("/audit")
def audit_page(console: ConsoleDep, cursor: str = "") -> Response:
    """Queries newest first, a page at a time, with their flags; the search keeps its terms in the URL.

    Filters: `product`, `buyer`, `purpose`, `from` and `to` (YYYY-MM-DD, both days included), `flagged`."""
    filters = ListFilters.read(console, FILTERS)
    values = filters.values
    values["flagged"] = "1" if values["flagged"] else ""
    error, status = "", 200
    records: list[AuditRecordOut] = []
    next_cursor = None
    try:
        where = _filters(console, values)
        before = decode_cursor(cursor, 2) if cursor else None
        if before is not None and not (isinstance(before[0], datetime) and isinstance(before[1], str)):
            raise BadRequest("invalid_cursor")
        found = audit.page(console.session, where, limit=PAGE + 1, before=before)  # type: ignore[arg-type]
        shown, next_cursor = cut(found, PAGE, lambda r: (r.created_at, r.id))
        records = audit.present(console.session, shown)
    except MarketError as failure:
        if failure.status_code == 403:
            raise
        error, status = console.message(failure), failure.status_code
    query = filters.query()
    return page(
        console,
        "regulator/audit.html",
        title="Audit log",
        crumbs=(("Audit log", None),),
        values=values,
        records=records,
        buyers=_buyers(console),
        purposes=[p.value for p in Purpose],
        error=error,
        next_link=f"{BASE}?{query}&cursor={next_cursor}" if next_cursor else "",
        status_code=status,
    )


@router.post("/audit/{record_id}/flag")
def flag_query(
    record_id: str,
    console: ConsoleDep,
    reason: Annotated[str, Form(max_length=5_000)] = "",
    back: Annotated[str, Form(max_length=2_000)] = "",
) -> Response:
    """Flag a query for follow-up with the reason (the usage record itself never changes)."""
    if not reason.strip():
        raise Unprocessable("console_reason_required")
    audit.flag(console.session, console.user, record_id[:40], reason)
    return redirect(console, back if back.startswith(BASE) else f"{BASE}?flagged=1")


@router.post("/audit/flags/{flag_id}/resolve")
def resolve_flag(
    flag_id: str,
    console: ConsoleDep,
    resolution: Annotated[str, Form(max_length=5_000)] = "",
    back: Annotated[str, Form(max_length=2_000)] = "",
) -> Response:
    """Close a flag's follow-up, saying what was found."""
    if not resolution.strip():
        raise Unprocessable("console_resolution_required")
    audit.resolve_flag(console.session, console.user, flag_id[:40], resolution)
    return redirect(console, back if back.startswith(BASE) else f"{BASE}?flagged=1")
