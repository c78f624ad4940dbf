"""Public-interest access requests the regulator reviews: the SLA clock on each, overdue first, and the decision
(approve with a quota and period, or reject with a reason)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from pydantic import ValidationError

from market.console.regulator.forms import validation_detail
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from metering import access, service
from metering.models import RequestStatus
from metering.schemas import AccessRequestOut, DecisionIn

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/requests"
FIELD_OF_ERROR = {
    "reason_required": "reason",
    "quota_required": "monthly_query_quota",
    "console_invalid_number": "monthly_query_quota",
}


def sla_order(request: AccessRequestOut) -> tuple[int, object, object]:
    """Overdue pending requests first, then pending by deadline, then decided ones, newest first."""
    if request.status == RequestStatus.PENDING.value:
        return (0 if request.overdue else 1, request.review_due_at or request.created_at, "")
    return (2, -(request.decided_at or request.created_at).timestamp(), "")


@router.get("/requests")
def requests_page(console: ConsoleDep) -> Response:
    """The public-interest requests the regulator reviews, with the time left or overdue."""
    found = access.present(console.session, access.visible_requests(console.session, console.user))
    return page(
        console,
        "regulator/requests.html",
        title="Public-interest access requests",
        crumbs=(("Public-interest requests", None),),
        requests=sorted(found, key=sla_order),
    )


def _detail(console: Console, request_id: str, values: dict[str, str], errors: dict[str, str], status: int) -> Response:
    shown = access.present(console.session, [access.visible_request(console.session, console.user, request_id)])[0]
    return page(
        console,
        "regulator/request.html",
        title="Access request",
        subtitle=shown.buyer,
        crumbs=(("Public-interest requests", BASE), (shown.product, None)),
        request=shown,
        values=values,
        errors=errors,
        status_code=status,
    )


@router.get("/requests/{request_id}")
def request_page(request_id: str, console: ConsoleDep) -> Response:
    """One request: buyer, product, purpose, scenario, justification, the SLA clock and the decision form."""
    return _detail(console, request_id[:40], {"valid_days": "365"}, {}, 200)


def _number(text: str) -> int | None:
    cleaned = text.strip().replace(",", "")
    if not cleaned:
        return None
    if not cleaned.isdigit():
        raise Unprocessable("console_invalid_number", value=text[:30])
    return int(cleaned)


@router.post("/requests/{request_id}/decision")
def decide(
    request_id: str,
    console: ConsoleDep,
    decision: Annotated[str, Form(max_length=20)],
    reason: Annotated[str, Form(max_length=5_000)] = "",
    monthly_query_quota: Annotated[str, Form(max_length=20)] = "",
    valid_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Approve with the quota and period, or reject with the reason the buyer reads."""
    values = {"reason": reason, "monthly_query_quota": monthly_query_quota, "valid_days": valid_days}
    try:
        body = DecisionIn(
            decision=decision,
            reason=reason.strip(),
            monthly_query_quota=_number(monthly_query_quota),
            valid_days=_number(valid_days),
        )
        service.decide_request(
            console.session,
            console.user,
            request_id[:40],
            approve=body.decision == "approve",
            reason=body.reason,
            monthly_query_quota=body.monthly_query_quota,
            valid_days=body.valid_days,
        )
    except MarketError as error:
        console.session.rollback()
        return _detail(console, request_id[:40], values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    except ValidationError as error:  # a quota or period out of range
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _detail(console, request_id[:40], values, {"": console.message(failure)}, 422)
    return redirect(console, f"{BASE}?decided={decision}")
