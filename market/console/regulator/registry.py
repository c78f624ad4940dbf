"""The regulator's resource registry: every resource, pending first; review one and register it under a code
(which opens its public notice) or return it with comments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from pydantic import ValidationError

from market.compliance import registration
from market.console.regulator.forms import validation_detail
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from products.governance import resources
from products.governance.models import ResourceStatus
from products.governance.schemas import ResourceReviewIn

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/resources"
FIELD_OF_ERROR = {"duplicate_registration_code": "registration_code", "console_comment_required": "comment"}
ORDER = {ResourceStatus.PENDING.value: 0, ResourceStatus.RETURNED.value: 1, ResourceStatus.REGISTERED.value: 2}


@router.get("/resources")
def registry_page(console: ConsoleDep) -> Response:
    """Every data resource: pending ones first (oldest first), then returned and registered."""
    found = resources.present(console.session, resources.visible(console.session, console.user))
    shown = sorted(found, key=lambda r: (ORDER.get(r.status, 3), r.created_at))
    return page(
        console, "regulator/resources.html", title="Resource registry", crumbs=(("Resources", None),), resources=shown
    )


def _detail(
    console: Console, resource_id: str, values: dict[str, str], errors: dict[str, str], status: int
) -> Response:
    resource = resources.get_visible(console.session, console.user, resource_id)
    shown = resources.present(console.session, [resource])[0]
    notices = registration.notices_of(console.session, console.user, "resource", resource.id)
    return page(
        console,
        "regulator/resource.html",
        title="Resource",
        subtitle=shown.title,
        crumbs=(("Resources", BASE), (shown.title, None)),
        resource=shown,
        notices=notices,
        values=values,
        errors=errors,
        status_code=status,
    )


@router.get("/resources/{resource_id}")
def resource_page(resource_id: str, console: ConsoleDep) -> Response:
    """One resource: its catalogue entry, classification and state, and the review form while it is pending."""
    return _detail(console, resource_id[:40], {}, {}, 200)


@router.post("/resources/{resource_id}/review")
def review_resource(
    resource_id: str,
    console: ConsoleDep,
    decision: Annotated[str, Form(max_length=20)],
    registration_code: Annotated[str, Form(max_length=64)] = "",
    comment: Annotated[str, Form(max_length=5_000)] = "",
) -> Response:
    """Register the resource (a code is made when none is given) or return it; returning needs comments."""
    values = {"decision": decision, "registration_code": registration_code, "comment": comment}
    settings = console.request.app.state.settings
    try:
        if decision == "return" and not comment.strip():
            raise Unprocessable("console_comment_required")
        body = ResourceReviewIn(
            decision=decision, comment=comment.strip(), registration_code=registration_code.strip() or None
        )
        resources.review(
            console.session,
            console.user,
            resource_id[:40],
            body.decision,
            body.comment,
            body.registration_code,
            settings.registration_notice_working_days,
        )
    except ValidationError as error:
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _detail(console, resource_id[:40], values, {"registration_code": console.message(failure)}, 422)
    except MarketError as error:
        console.session.rollback()
        errors = form_errors(console, error, FIELD_OF_ERROR)
        return _detail(console, resource_id[:40], values, errors, error.status_code)
    return redirect(console, f"{BASE}/{resource_id[:40]}?reviewed={decision}")
