"""Registrations in public notice (公示): every registration with its objections; the regulator dismisses or
upholds an objection (upholding withdraws the registration) and confirms a registration whose notice ended."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from market.compliance import registration
from market.console.web import ConsoleDep, check_csrf, page, redirect
from market.errors import Unprocessable

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/registrations"


@router.get("/registrations")
def registrations_page(console: ConsoleDep) -> Response:
    """Registrations newest first, with notice period, state and objections (the regulator reads them all)."""
    found = [registration.present(console.session, r, console.user) for r in registration.listing(console.session)]
    return page(
        console,
        "regulator/registrations.html",
        title="Registrations",
        crumbs=(("Registrations", None),),
        registrations=sorted(found, key=lambda r: r.notice_starts_at, reverse=True),
    )


@router.post("/registrations/{registration_id}/objections/{objection_id}/resolve")
def resolve_objection(
    registration_id: str,
    objection_id: str,
    console: ConsoleDep,
    decision: Annotated[str, Form(max_length=20)],
    resolution: Annotated[str, Form(max_length=5_000)] = "",
) -> Response:
    """Dismiss or uphold an objection, saying why (upholding withdraws the registration)."""
    if decision not in ("dismiss", "uphold"):
        raise Unprocessable("console_unknown_action", action=decision[:20])
    if not resolution.strip():
        raise Unprocessable("console_reason_required")
    registration.resolve(
        console.session, console.user, registration_id[:40], objection_id[:40], decision, resolution.strip()
    )
    return redirect(console, f"{BASE}?resolved={decision}")


@router.post("/registrations/{registration_id}/confirm")
def confirm(registration_id: str, console: ConsoleDep) -> Response:
    """Confirm a registration whose notice ended with no open objection."""
    registration.confirm_by_regulator(console.session, console.user, registration_id[:40])
    return redirect(console, f"{BASE}?confirmed=1")
