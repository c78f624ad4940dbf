"""Revenue shares (收益分配) per product, for the regulator and finance (billing.revenue decides who may): the
current split per party, and a form to change it, in percent, that must add up to the whole. New agreements
freeze the shares in force when they are made; existing agreements keep theirs."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from billing import revenue
from billing.models import PartyKind
from market.console.web import Console, ConsoleDep, check_csrf, page, redirect
from market.errors import MarketError, NotFound, Unprocessable
from metering.repository import org_names

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/revenue-shares"
SOURCE_ROWS = 4
"""Rows the form offers for source departments (more when a product already has more)."""
MAX_SOURCES = 18
"""Source rows read from a form: the API takes at most 20 parties, two of them the operator and the platform."""
PERCENT = re.compile(r"\d{1,3}([.,]\d{1,2})?")
OPERATOR, PLATFORM = PartyKind.OPERATOR.value, PartyKind.PLATFORM.value
FIELD_OF_ERROR = {
    "shares_must_sum": "shares",
    "duplicate_share_party": "sources",
    "share_source_unknown": "sources",
}


def basis_points(text: str, field: str) -> int:
    """A percentage typed with at most two decimals ("12.5") as basis points (1250); empty is zero."""
    cleaned = text.strip().rstrip("%").strip()
    if not cleaned:
        return 0
    if not PERCENT.fullmatch(cleaned) or Decimal(cleaned.replace(",", ".")) > 100:
        raise Unprocessable("console_invalid_percent", field=field, value=text[:20])
    return int(Decimal(cleaned.replace(",", ".")) * 100)


def percent(points: int) -> str:
    """Basis points as a percentage without needless decimals: 8000 -> "80", 1250 -> "12.5"."""
    return f"{Decimal(points) / 100:f}".rstrip("0").rstrip(".") if points % 100 else str(points // 100)


@router.get("/revenue-shares")
def shares_page(console: ConsoleDep) -> Response:
    """Every product's split per party, and whether it is configured or the default."""
    found = revenue.shares_overview(console.session, console.user)
    names = org_names(console.session, [s.party_org_id for p in found for s in p.shares if s.party_org_id])
    return page(
        console,
        "regulator/shares.html",
        title="Revenue shares",
        crumbs=(("Revenue shares", None),),
        products=found,
        names=names,
        percent=percent,
    )


def _form(
    console: Console, slug: str, values: dict[str, Any] | None, errors: dict[str, str], status: int = 200
) -> Response:
    found = next((p for p in revenue.shares_overview(console.session, console.user) if p.slug == slug), None)
    if found is None:
        raise NotFound("product_not_found", slug=slug)
    if values is None:
        by_kind = {s.party_kind: s for s in found.shares if s.party_kind != PartyKind.SOURCE.value}
        sources = [s for s in found.shares if s.party_kind == PartyKind.SOURCE.value]
        values = {
            "operator": percent(by_kind[OPERATOR].basis_points) if OPERATOR in by_kind else "0",
            "platform": percent(by_kind[PLATFORM].basis_points) if PLATFORM in by_kind else "0",
            "sources": [(s.party_org_id or "", percent(s.basis_points)) for s in sources],
        }
    rows = list(values["sources"]) + [("", "")] * (SOURCE_ROWS - len(values["sources"]))
    names = org_names(console.session, [s.party_org_id for s in found.shares if s.party_org_id])
    return page(
        console,
        "regulator/shares_form.html",
        title="Revenue shares",
        subtitle=found.title,
        crumbs=(("Revenue shares", BASE), (slug, None)),
        product=found,
        names=names,
        percent=percent,
        values=values,
        source_rows=rows,
        sources=revenue.source_departments(console.session, console.user),
        errors=errors,
        status_code=status,
    )


@router.get("/revenue-shares/{slug}")
def shares_form(slug: str, console: ConsoleDep) -> Response:
    """The product's split as a form, prefilled with the shares in force."""
    return _form(console, slug[:100], None, {})


async def form_fields(request: Request) -> dict[str, str]:
    """The form's text fields, read here so that the route itself is synchronous (its session is)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/revenue-shares/{slug}")
def save_shares(slug: str, text: Annotated[dict[str, str], Depends(form_fields)], console: ConsoleDep) -> Response:
    """Replace the product's shares; a mistake comes back next to its field with the form as filled."""
    values: dict[str, Any] = {
        "operator": text.get("operator", "")[:20],
        "platform": text.get("platform", "")[:20],
        "sources": [
            (text.get(f"source_{n}", "")[:40], text.get(f"source_share_{n}", "")[:20])
            for n in range(MAX_SOURCES)
            if f"source_{n}" in text or f"source_share_{n}" in text
        ],
    }
    return _save(console, slug[:100], values)


def _save(console: Console, slug: str, values: dict[str, Any]) -> Response:
    try:
        shares: list[tuple[str, str | None, int]] = [
            (PartyKind.OPERATOR.value, None, basis_points(values["operator"], "operator")),
            (PartyKind.PLATFORM.value, None, basis_points(values["platform"], "platform")),
        ]
        for n, (org, share) in enumerate(values["sources"]):
            points = basis_points(share, f"source_share_{n}")
            if org or points:
                shares.append((PartyKind.SOURCE.value, org or None, points))
        revenue.set_shares(console.session, console.user, slug, shares)
    except MarketError as error:
        if error.status_code in (403, 404):
            raise
        console.session.rollback()
        field = FIELD_OF_ERROR.get(error.code) or str(error.params.get("field", "")) or "shares"
        return _form(console, slug, values, {field: console.message(error)}, error.status_code)
    return redirect(console, f"{BASE}/{slug}?saved=1")
