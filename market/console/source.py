"""A source department's pages: register a resource (catalogue fields), follow its registration, answer the
regulator's comments on a returned one; the products derived from its resources and its revenue-share
statements."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from pydantic import ValidationError

from billing import document_render, documents, statements
from billing.config import Period
from market.accounts.models import Role
from market.clock import utcnow
from market.compliance import registration
from market.console.regulator.forms import validation_detail, words
from market.console.vocabulary import ZONES
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from market.i18n import N_
from products.governance import derived, resources
from products.governance.models import Classification, ResourceStatus
from products.governance.schemas import REGION, ZONE, ResourceIn

router = APIRouter(prefix="/console/source", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/source/resources"
CATALOGUE_FIELDS = (
    N_("fields"),
    N_("update_frequency"),
    N_("time_span"),
    N_("contact"),
    N_("legal_basis"),
)
"""The catalogue entry's fields (公共数据资源目录) the form asks for; `fields` is a list of column names."""
CLASSIFICATIONS = (N_("general"), N_("important"), N_("core"))
FIELD_OF_ERROR = {
    "console_title_required": "title",
    "console_invalid_region": "region",
    "console_zone_required": "zone",
}


def _values(resource: Any) -> dict[str, str]:
    catalogue = dict(resource.catalogue or {})
    values = {
        "title": resource.title,
        "description": resource.description,
        "zone": resource.zone,
        "region": resource.region,
        "classification": resource.classification,
    }
    for key in CATALOGUE_FIELDS:
        value = catalogue.get(key, "")
        values[key] = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return values


def _resource_in(values: dict[str, str]) -> ResourceIn:
    """The form's fields as the API's body; the usual mistakes carry a code placed next to their field."""
    if not values.get("title", "").strip():
        raise Unprocessable("console_title_required")
    if not re.fullmatch(ZONE, values.get("zone", "")):
        raise Unprocessable("console_zone_required")
    if not re.fullmatch(REGION, values.get("region", "").strip()):
        raise Unprocessable("console_invalid_region", region=values.get("region", "")[:30])
    catalogue: dict[str, Any] = {}
    for key in CATALOGUE_FIELDS:
        text = values.get(key, "").strip()
        if text:
            catalogue[key] = words(text) if key == "fields" else text
    return ResourceIn(
        title=values["title"].strip(),
        description=values.get("description", "").strip(),
        zone=values["zone"],
        region=values["region"].strip(),
        classification=Classification(values.get("classification") or Classification.GENERAL.value),
        catalogue=catalogue,
    )


@router.get("/resources")
def resources_page(console: ConsoleDep) -> Response:
    """My resources with their registration state, code and the regulator's comments; returned ones first."""
    found = resources.present(console.session, resources.visible(console.session, console.user))
    order = {ResourceStatus.RETURNED.value: 0, ResourceStatus.PENDING.value: 1}
    shown = sorted(found, key=lambda r: (order.get(r.status, 2), r.created_at))
    return page(console, "source/resources.html", title="My resources", crumbs=(("Resources", None),), resources=shown)


def _form(
    console: Console, values: dict[str, str], errors: dict[str, str], *, resource: Any = None, status: int = 200
) -> Response:
    title = "Answer the comments" if resource is not None else "Register a resource"
    crumbs: tuple[tuple[str, str | None], ...] = (("Resources", BASE), (title, None))
    return page(
        console,
        "source/resource_form.html",
        title=title,
        crumbs=crumbs,
        values=values,
        errors=errors,
        resource=resource,
        zones=ZONES,
        classifications=CLASSIFICATIONS,
        catalogue_fields=CATALOGUE_FIELDS,
        status_code=status,
    )


@router.get("/resources/new")
def new_resource_form(console: ConsoleDep) -> Response:
    """The registration form: title, description, zone, region, classification and the catalogue fields."""
    console.user.require(Role.SOURCE)
    return _form(console, {"classification": "general"}, {})


FormText = Annotated[str, Form(max_length=20_000)]


def _submitted(
    title: FormText = "",
    description: FormText = "",
    zone: FormText = "",
    region: FormText = "",
    classification: FormText = "",
    fields: FormText = "",
    update_frequency: FormText = "",
    time_span: FormText = "",
    contact: FormText = "",
    legal_basis: FormText = "",
) -> dict[str, str]:
    """The resource form's fields as submitted (a dependency shared by registering and revising)."""
    return {
        "title": title,
        "description": description,
        "zone": zone,
        "region": region,
        "classification": classification,
        "fields": fields,
        "update_frequency": update_frequency,
        "time_span": time_span,
        "contact": contact,
        "legal_basis": legal_basis,
    }


Submitted = Annotated[dict[str, str], Depends(_submitted)]


@router.post("/resources/new")
def register_resource(
    console: ConsoleDep,
    values: Submitted,
) -> Response:
    """Submit the resource for registration; it waits for the regulator as pending."""
    try:
        created = resources.register(console.session, console.user, _resource_in(values))
    except ValidationError as error:
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _form(console, values, form_errors(console, failure, {}), status=failure.status_code)
    except MarketError as error:
        console.session.rollback()
        return _form(console, values, form_errors(console, error, FIELD_OF_ERROR), status=error.status_code)
    return redirect(console, f"{BASE}/{created.id}?sent=1")


@router.get("/resources/{resource_id}")
def resource_page(resource_id: str, console: ConsoleDep) -> Response:
    """One of my resources: catalogue entry, state, registration and notice, the regulator's comments."""
    resource = resources.get_visible(console.session, console.user, resource_id[:40])
    shown = resources.present(console.session, [resource])[0]
    notices = registration.notices_of(console.session, console.user, "resource", resource.id)
    return page(
        console,
        "source/resource.html",
        title="Resource",
        subtitle=shown.title,
        crumbs=(("Resources", BASE), (shown.title, None)),
        resource=shown,
        notices=notices,
    )


@router.get("/resources/{resource_id}/revise")
def revise_form(resource_id: str, console: ConsoleDep) -> Response:
    """A returned resource's form, filled as it was, with the regulator's comments above it."""
    resource = resources.get_visible(console.session, console.user, resource_id[:40])
    console.user.require(Role.SOURCE)
    shown = resources.present(console.session, [resource])[0]
    return _form(console, _values(resource), {}, resource=shown)


@router.post("/resources/{resource_id}/revise")
def revise_resource(
    resource_id: str,
    console: ConsoleDep,
    values: Submitted,
) -> Response:
    """Send the revised resource back to the regulator (it becomes pending again)."""
    resource = resources.get_visible(console.session, console.user, resource_id[:40])
    shown = resources.present(console.session, [resource])[0]
    try:
        resources.revise(console.session, console.user, resource.id, _resource_in(values))
    except ValidationError as error:
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _form(console, values, form_errors(console, failure, {}), resource=shown, status=422)
    except MarketError as error:
        console.session.rollback()
        errors = form_errors(console, error, FIELD_OF_ERROR)
        return _form(console, values, errors, resource=shown, status=error.status_code)
    return redirect(console, f"{BASE}/{resource.id}?revised=1")


def _last_month() -> str:
    first = utcnow().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


@router.get("/statements")
def statements_page(console: ConsoleDep, period: str = "") -> Response:
    """The products derived from my resources, and my revenue-share statement for a month (last month first)."""
    chosen = Period.parse(period[:7] or _last_month())
    products = derived.derived_products(console.session, console.user)
    found = statements.statements(console.session, console.user, chosen)
    return page(
        console,
        "source/statements.html",
        title="Products and statements",
        crumbs=(("Statements", None),),
        products=products,
        statements=found,
        period=chosen.key,
    )


@router.get("/statements/document")
def statement_document(console: ConsoleDep, period: str = "", format: str = "html") -> Response:
    """My settlement statement (收益分配结算单) for the month, as HTML or PDF (the API's document)."""
    document_render.check_format(format)
    chosen = Period.parse(period[:7] or _last_month())
    found = statements.statements(console.session, console.user, chosen)
    document = documents.statement_document(
        console.session, chosen.key, found, documents.statement_recipient(console.user), console.locale
    )
    return document_render.respond(document, format)
