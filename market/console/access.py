"""The buyer's access pages: the request form, my requests, my agreements with what is left this month."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import JSONResponse, Response

from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from metering import access, agreements, service
from metering.models import Purpose
from metering.repository import products_by_id
from metering.schemas import AgreementOut
from products import service as products
from sandbox import dp

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

FIELD_OF_ERROR = {
    "plan_not_found": "plan",
    "plan_purpose_mismatch": "plan",
    "scenario_required": "scenario",
    "scenario_not_allowed": "scenario",
    "invalid_purpose": "purpose",
    "justification_required": "justification",
}
"""Which form field an error code belongs next to; others are shown above the form."""


@dataclass(frozen=True)
class PrivacyView:
    """A DP agreement's privacy budget as the pages show it: epsilon at the policy's delta."""

    epsilon: Decimal
    delta: Decimal
    spent: Decimal
    left: Decimal
    query_default: Decimal
    query_min: Decimal
    query_max: Decimal
    version_cap: Decimal


def privacy_view(agreement: AgreementOut) -> PrivacyView | None:
    """The budget, spent and left of an agreement (from the API's `privacy_budget`), or None in threshold mode.

    Epsilons do not subtract: what is left is the epsilon of the rho left, as the API's answers state it."""
    budget: dict[str, Any] | None = agreement.privacy_budget
    if not budget:
        return None
    spent = budget.get("spent") or {}
    delta = dp.decimal_of(budget["delta"])
    per_query = budget.get("per_query_epsilon") or {}
    return PrivacyView(
        epsilon=dp.decimal_of(budget["epsilon"]),
        delta=delta,
        spent=dp.decimal_of(spent.get("epsilon", 0)).quantize(agreements.EPSILON_SHOWN),
        left=agreements.shown_epsilon(dp.decimal_of(budget["rho"]) - dp.decimal_of(spent.get("rho", 0)), delta),
        query_default=dp.decimal_of(per_query.get("default", 0)),
        query_min=dp.decimal_of(per_query.get("min", 0)),
        query_max=dp.decimal_of(per_query.get("max", 0)),
        version_cap=dp.decimal_of(budget.get("version_cap_epsilon") or 0),
    )


def held_agreements(console: Console) -> list[tuple[AgreementOut, agreements.Standing, str]]:
    """The buyer's agreements, each with this month's quota and cap left and its product's slug."""
    held = list(agreements.visible_agreements(console.session, console.buyer()))
    slugs = {pid: p.slug for pid, p in products_by_id(console.session, [a.product_id for a in held]).items()}
    shown = agreements.present(console.session, held)
    return [
        (out, agreements.standing(console.session, a), slugs.get(a.product_id, a.product_id))
        for out, a in zip(shown, held, strict=True)
    ]


@router.get("/access")
def access_page(console: ConsoleDep) -> Response:
    """My access requests (state, deadline, reviewer's reason) and my agreements (terms, quota and cap left)."""
    requests = access.present(console.session, access.visible_requests(console.session, console.buyer()))
    rows = held_agreements(console)
    return page(
        console,
        "access.html",
        title="Access",
        crumbs=(("Access", None),),
        requests=requests,
        agreements=rows,
        privacy=privacy_view,
    )


def _form(console: Console, slug: str, values: dict[str, str], errors: dict[str, str], status: int = 200) -> Response:
    product = products.public_product(console.session, slug) if slug else None
    shown = products.present(console.session, [product])[0] if product else None
    catalogue = products.present(console.session, products.public_catalogue(console.session))
    return page(
        console,
        "access_form.html",
        title="Request access",
        crumbs=(("Access", "/console/access"), ("Request access", None)),
        product=shown,
        catalogue=catalogue,
        purposes=[p.value for p in Purpose],
        values=values,
        errors=errors,
        status_code=status,
    )


@router.get("/access/new")
def access_form(console: ConsoleDep, product: str = "") -> Response:
    """The request form: product, plan, purpose, scenario and justification."""
    console.buyer()
    return _form(console, product[:100], {"product": product[:100]}, {})


@router.post("/access/new")
def submit_access(
    console: ConsoleDep,
    product: Annotated[str, Form(max_length=100)],
    plan: Annotated[str, Form(max_length=50)] = "",
    purpose: Annotated[str, Form(max_length=30)] = "",
    scenario: Annotated[str, Form(max_length=100)] = "",
    justification: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    """Send the request; a mistake comes back next to the field it concerns, with the form as filled."""
    buyer = console.buyer()
    values = {
        "product": product,
        "plan": plan,
        "purpose": purpose,
        "scenario": scenario,
        "justification": justification,
    }
    try:
        if purpose not in {p.value for p in Purpose}:
            raise Unprocessable("invalid_purpose", purposes=", ".join(p.value for p in Purpose))
        service.request_access(
            console.session,
            buyer,
            product_slug=product,
            plan_code=plan,
            purpose=Purpose(purpose),
            scenario=scenario,
            justification=justification,
        )
    except MarketError as error:
        console.session.rollback()
        return _form(console, product, values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    return redirect(console, "/console/access?sent=1")


@router.get("/agreements/{agreement_id}/odrl")
def agreement_odrl(agreement_id: str, console: ConsoleDep) -> Response:
    """Download the agreement as an ODRL policy (JSON-LD)."""
    document = agreements.odrl_document(console.session, console.user, agreement_id)
    return JSONResponse(
        document,
        media_type="application/ld+json",
        headers={"Content-Disposition": f'attachment; filename="agreement-{agreement_id[:40]}.odrl.jsonld"'},
    )
