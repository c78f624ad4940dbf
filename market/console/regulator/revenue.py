"""Allowed revenue (最高准许收入): the regulator records each operator's permitted costs by category, subsidies,
permitted profit and taxes for a year (in yuan); the allowed revenue is derived, never typed; an ended year
is closed into next year's deduction."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from market.accounts import service as accounts
from market.accounts.models import OrgKind
from market.clock import utcnow
from market.compliance import allowed_revenue
from market.compliance.schemas import AllowedRevenueIn
from market.console.regulator.forms import validation_detail, whole_minor_units
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/allowed-revenue"
FIGURES = (
    "platform_cost_minor",
    "collection_cost_minor",
    "processing_cost_minor",
    "staff_cost_minor",
    "subsidies_minor",
    "profit_minor",
    "taxes_minor",
)
FIELD_OF_ERROR = {
    "console_invalid_amount": "figures",
    "allowed_revenue_closed": "figures",
    "operator_not_found": "operator",
}


def _year(text: str) -> int:
    if not text:
        return utcnow().year
    if not text.isdigit() or not 2000 <= int(text) <= 2100:
        raise Unprocessable("console_invalid_year", value=text[:10])
    return int(text)


def _page(console: Console, year: int, values: dict[str, str], errors: dict[str, str], status: int = 200) -> Response:
    rows = [
        allowed_revenue.present(console.session, r)
        for r in allowed_revenue.visible(console.session, console.user, year)
    ]
    operators = [
        (o.id, o.name) for o in accounts.list_orgs(console.session, console.user) if o.kind == OrgKind.OPERATOR.value
    ]
    return page(
        console,
        "regulator/revenue.html",
        title="Allowed revenue",
        crumbs=(("Allowed revenue", None),),
        year=year,
        rows=rows,
        operators=operators,
        figures=FIGURES,
        closable=year < utcnow().year,
        values=values,
        errors=errors,
        status_code=status,
    )


@router.get("/allowed-revenue")
def revenue_page(console: ConsoleDep, year: str = "") -> Response:
    """Every operator's figures for the year with the derived allowed revenue, revenue received and headroom."""
    return _page(console, _year(year[:10]), {}, {})


@router.post("/allowed-revenue")
async def record(request: Request, console: ConsoleDep) -> Response:
    """Record (or correct) one operator's figures for a year; the allowed revenue follows from them."""
    form = await request.form()
    values = {key: str(form.get(key) or "")[:5_000] for key in form}
    year = _year(values.get("year", ""))
    try:
        data = AllowedRevenueIn(
            **{name: whole_minor_units(values.get(name, ""), name.removesuffix("_minor")) for name in FIGURES},
            note=values.get("note", ""),
        )
        allowed_revenue.record(console.session, console.user, values.get("operator", ""), year, data)
    except ValidationError as error:
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _page(console, year, values, {"figures": console.message(failure)}, 422)
    except MarketError as error:
        console.session.rollback()
        return _page(console, year, values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    return redirect(console, f"{BASE}?year={year}&recorded=1")


@router.post("/allowed-revenue/{operator}/{year}/close")
def close(operator: str, year: str, console: ConsoleDep) -> Response:
    """Close an ended year: its excess (or 0) becomes next year's deduction."""
    chosen = _year(year[:10])
    allowed_revenue.close_for(console.session, console.user, operator[:40], chosen)
    return redirect(console, f"{BASE}?year={chosen}&closed=1")
