"""Public notices (公示) in the console: any signed-in organisation, whatever its role, may object to a
registration while its notice runs, and follows its own objections to their outcome. The regulator resolves
them on its registrations page (market/console/regulator/notices.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from market.compliance import registration
from market.console.filters import ListFilters
from market.console.web import Console, ConsoleDep, check_csrf, page, redirect
from market.errors import MarketError, Unprocessable

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/notices"


def _page(
    console: Console,
    *,
    code: str = "",
    errors: dict[str, str] | None = None,
    reasons: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    viewer = console.user
    running = registration.open_to_objections(console.session)
    if code:
        wanted = code.strip().upper()
        running = [r for r in running if wanted in (r.registration_code.upper(), r.lookup_code.upper())]
    return page(
        console,
        "notices.html",
        title="Public notices",
        crumbs=(("Public notices", None),),
        registrations=running,
        mine=registration.objections_by(console.session, viewer),
        code=code,
        errors=errors or {},
        reasons=reasons or {},
        status_code=status,
    )


@router.get("/notices")
def notices_page(console: ConsoleDep) -> Response:
    """Registrations in notice now (one, when `code` names it), each with an objection form; then ours."""
    return _page(console, code=ListFilters.read(console, {"code": 64}).values["code"])


@router.post("/notices/{registration_id}/objections")
def file_objection(
    registration_id: str,
    console: ConsoleDep,
    reason: Annotated[str, Form(max_length=5_000)] = "",
    code: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """File our organisation's objection, with its reason; the regulator and the registrant are notified."""
    try:
        if not reason.strip():
            raise Unprocessable("console_reason_required")
        registration.object_to(console.session, console.user, registration_id[:40], reason.strip())
    except MarketError as error:
        if error.status_code in (403, 404):
            raise
        console.session.rollback()
        key = registration_id[:40]
        errors, reasons = {key: console.message(error)}, {key: reason}
        return _page(console, code=code, errors=errors, reasons=reasons, status=error.status_code)
    return redirect(console, f"{BASE}?filed=1#objections")
