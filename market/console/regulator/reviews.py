"""The regulator's product review queue (overdue first) and the review page: audit report with the operator's
justifications, quality report, lineage, recipe, a diff against the listed version, the fee cap and the product's
upper fee standard, and the decision (approve, or return with comments)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from pydantic import ValidationError

from market.clock import utcnow
from market.compliance import fee_standards, registration
from market.compliance.schemas import FeeStandardIn
from market.console.regulator.forms import minor_units, validation_detail, whole_minor_units
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from products import service as products
from products import versions
from products.review import flatten, review_queue, version_diff

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/reviews"
FIELD_OF_ERROR = {
    "console_comment_required": "comment",
    "fee_standard_above_cap": "fee_standard",
    "plan_above_fee_standard": "fee_standard",
    "console_invalid_amount": "fee_standard",
    "duplicate_registration_code": "registration_code",
    "registration_needs_review": "registration_code",
    "console_reason_required": "delist_reason",
}


@router.get("/reviews")
def queue_page(console: ConsoleDep) -> Response:
    """Products and new versions waiting for review, the most overdue first."""
    waiting = review_queue(console.session, console.user)
    shown = products.present(console.session, waiting, viewer=console.user)
    now = utcnow()
    return page(
        console,
        "regulator/reviews.html",
        title="Product reviews",
        crumbs=(("Reviews", None),),
        queue=shown,
        overdue={p.slug for p in waiting if p.review_due_at is not None and p.review_due_at < now},
    )


def _version(console: Console, slug: str, version_id: str | None) -> Any:
    if version_id is None:
        return None
    for version in versions.versions_visible(console.session, console.user, slug):
        if version.id == version_id:
            return versions.present_version(console.session, version)
    return None  # pragma: no cover - ids come from the product row


def _review(console: Console, slug: str, values: dict[str, str], errors: dict[str, str], status: int) -> Response:
    product = products.visible_product(console.session, console.user, slug)
    history = products.history(console.session, console.user, slug)  # the operator's own or the regulator
    shown = products.present(console.session, [product], detail=True, viewer=console.user)[0]
    pending = _version(console, slug, product.pending_version_id)
    listed = _version(console, slug, product.listed_version_id)
    current = pending or listed or _version(console, slug, product.latest_version_id)
    fees = fee_standards.fee_view(console.session, console.user, slug)
    notices = registration.notices_of(console.session, console.user, "product", product.id)
    return page(
        console,
        "regulator/review.html",
        title="Product review",
        subtitle=product.title,
        crumbs=(("Reviews", BASE), (slug, None)),
        product=shown,
        pending=pending,
        listed=listed,
        current=current,
        changes=version_diff(listed, pending) if pending else [],
        quality=flatten(current.quality or {}) if current else {},
        recipe=flatten(current.recipe or {}) if current else {},
        history=history,
        fees=fees,
        notices=notices,
        values=values,
        errors=errors,
        status_code=status,
    )


@router.get("/reviews/{slug}")
def review_page(slug: str, console: ConsoleDep) -> Response:
    """Everything the review needs on one page, and the decision form while a version waits."""
    return _review(console, slug[:100], {}, {}, 200)


@router.post("/reviews/{slug}/decision")
def decide(
    slug: str,
    console: ConsoleDep,
    decision: Annotated[str, Form(max_length=20)],
    comment: Annotated[str, Form(max_length=5_000)] = "",
) -> Response:
    """Approve (list the version) or return it; returning needs comments the operator reads."""
    slug = slug[:100]
    try:
        if decision not in ("approve", "return"):
            raise Unprocessable("console_unknown_action", action=decision[:20])
        if decision == "return" and not comment.strip():
            raise Unprocessable("console_comment_required")
        products.review(console.session, console.user, slug, decision, comment.strip())
    except MarketError as error:
        console.session.rollback()
        errors = form_errors(console, error, FIELD_OF_ERROR)
        return _review(console, slug, {"comment": comment}, errors, error.status_code)
    return redirect(console, f"{BASE}/{slug}?decided={decision}")


@router.post("/reviews/{slug}/fee-standard")
def set_fee_standard(
    slug: str,
    console: ConsoleDep,
    per_query: Annotated[str, Form(max_length=40)] = "",
    per_gb: Annotated[str, Form(max_length=40)] = "",
    monthly: Annotated[str, Form(max_length=40)] = "",
    per_tenth_epsilon: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Set the product's upper fee standard (上限收费标准), in yuan, inside the zone's cap."""
    slug = slug[:100]
    values = {"per_query": per_query, "per_gb": per_gb, "monthly": monthly, "per_tenth_epsilon": per_tenth_epsilon}
    try:
        data = FeeStandardIn(
            max_per_query_minor=whole_minor_units(per_query, "per query"),
            max_per_gb_minor=minor_units(per_gb, "per GB", places=6),
            max_monthly_fee_minor=whole_minor_units(monthly, "monthly fee"),
            max_per_tenth_epsilon_minor=whole_minor_units(per_tenth_epsilon, "per 0.1 epsilon")
            if per_tenth_epsilon.strip()
            else None,
        )
        fee_standards.set_standard(console.session, console.user, slug, data)
    except ValidationError as error:
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _review(console, slug, values, {"fee_standard": console.message(failure)}, failure.status_code)
    except MarketError as error:
        console.session.rollback()
        return _review(console, slug, values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    return redirect(console, f"{BASE}/{slug}?fee_standard=1")


@router.post("/reviews/{slug}/registration")
def register_product(
    slug: str, console: ConsoleDep, registration_code: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    """Register the product (where required); its public notice starts."""
    slug = slug[:100]
    settings = console.request.app.state.settings
    try:
        registration.register_product(console.session, settings, console.user, slug, registration_code.strip() or None)
    except MarketError as error:
        console.session.rollback()
        values = {"registration_code": registration_code}
        return _review(console, slug, values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    return redirect(console, f"{BASE}/{slug}?registered=1")


@router.post("/reviews/{slug}/delist")
def delist_product(slug: str, console: ConsoleDep, reason: Annotated[str, Form(max_length=5_000)] = "") -> Response:
    """Take a listed product off the catalogue with the reason; its agreements stop being served."""
    slug = slug[:100]
    try:
        if not reason.strip():
            raise Unprocessable("console_reason_required")
        products.delist(console.session, console.user, slug, reason.strip())
    except MarketError as error:
        console.session.rollback()
        values = {"delist_reason": reason}
        return _review(console, slug, values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    return redirect(console, f"{BASE}/{slug}?delisted=1")
