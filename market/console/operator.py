"""The operator's product pages: my products with their history, the new-product wizard, plans under the fee cap,
submission and delisting. Upload, recipe and build are in operator_build.py; access and money in operator_access.py.

Every page calls the same service functions as /v1/products with the signed-in principal: another operator's
product answers as not found there, so it does here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from market.accounts.models import Role, User
from market.accounts.service import Principal
from market.clock import utcnow
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from metering import access
from products import repository, service, versions
from products.governance import authorisations, resources
from products.models import PlanKind, Product, ProductStatus
from products.schemas import PlanIn, ProductIn

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

STATES = (
    ProductStatus.DRAFT,
    ProductStatus.SUBMITTED,
    ProductStatus.RETURNED,
    ProductStatus.LISTED,
    ProductStatus.DELISTED,
)
"""The groups of the products page, in the order of the state machine."""

FIELD_OF_ERROR = {
    "outside_authorisation": "region",
    "no_authorisation": "zone",
    "authorisation_expired": "zone",
    "scenario_outside_authorisation": "scenarios",
    "duplicate_product": "slug",
    "fee_above_cap": "plans",
    "plan_currency_mismatch": "plans",
    "price_not_a_number": "plans",
    "resource_not_found": "resources",
    "resource_not_registered": "resources",
    "resource_core": "resources",
    "resource_outside_zone": "resources",
}
"""Which wizard field an error code belongs next to; others are shown above the form."""

FEES = ("per_query_minor", "monthly_fee_minor", "per_gb_minor")
PLAN_ROWS = 2


def minor_of(text: str, field: str) -> Decimal:
    """A price typed in major units (e.g. 1.50 yuan) as minor units; whole minor units except per GB."""
    try:
        value = Decimal(text.strip() or "0") * 100
    except InvalidOperation as error:
        raise Unprocessable("price_not_a_number", value=text[:40]) from error
    if value < 0 or not value.is_finite():
        raise Unprocessable("price_not_a_number", value=text[:40])
    return value


def major_of(minor: Decimal | int | str | None) -> str:
    """Minor units as the major-unit text a price field shows (the reverse of minor_of)."""
    value = Decimal(str(minor or 0)) / 100
    return format(value.normalize(), "f") if value else "0"


def grants_in_force(console: Console) -> list[Any]:
    """The operator's authorisations in force now: the only zones, regions and scenarios the wizard offers."""
    now = utcnow()
    own = authorisations.visible(console.session, console.user)
    return [g for g in authorisations.present(console.session, own) if g.in_force and g.valid_until > now]


def scope_of(grants: list[Any], zone: str) -> dict[str, Any]:
    """Zones, and for the chosen zone its regions, scenarios and fee cap (from the grants that cover it)."""
    zones = sorted({z for g in grants for z in g.zones})
    covering = [g for g in grants if zone in g.zones]
    cap = next((cap for g in covering for cap in g.fee_caps if cap.zone == zone), None)
    scenarios = sorted({s for g in covering for s in g.scenarios})
    return {
        "zones": zones,
        "regions": sorted({r for g in covering for r in g.regions}),
        "scenarios": scenarios,
        "any_scenario": any(not g.scenarios for g in covering),
        "cap": cap,
        "currency": covering[0].currency if covering else "CNY",
    }


def limits_of(zone: str, fee_limits: dict[str, Any] | None) -> SimpleNamespace | None:
    """The stricter, fee by fee, of the zone's cap and the product's fee standard, in the wizard's shape."""
    found = [x for x in ((fee_limits or {}).get("zone_cap"), (fee_limits or {}).get("fee_standard")) if x]
    if not found:
        return None
    least = {fee: min(Decimal(str(x[fee])) for x in found) for fee in FEES}
    return SimpleNamespace(
        zone=zone,
        max_per_query_minor=int(least["per_query_minor"]),
        max_per_gb_minor=least["per_gb_minor"],
        max_monthly_fee_minor=int(least["monthly_fee_minor"]),
    )


def plans_from_form(form: dict[str, list[str]], currency: str) -> list[PlanIn]:
    """The wizard's plan rows (empty rows skipped) as PlanIn; prices are typed in major units."""
    plans: list[PlanIn] = []
    for index in range(PLAN_ROWS):
        code = (form.get(f"plan_code_{index}") or [""])[0].strip()
        if not code:
            continue
        raw: dict[str, Any] = {
            "code": code,
            "title": (form.get(f"plan_title_{index}") or [""])[0].strip() or code,
            "kind": (form.get(f"plan_kind_{index}") or ["commercial"])[0],
            "currency": currency,
        }
        for fee in FEES:
            amount = minor_of((form.get(f"plan_{fee}_{index}") or [""])[0], fee)
            raw[fee] = amount if fee == "per_gb_minor" else int(amount)
        quota = (form.get(f"plan_quota_{index}") or [""])[0].strip()
        if quota:
            raw["monthly_query_quota"] = quota
        try:
            plans.append(PlanIn.model_validate(raw))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Unprocessable("invalid_request", detail=f"plan {code}: {where}: {first['msg']}") from error
    return plans


def operator(console: Console) -> Principal:
    """The signed-in operator (the services check the role again; this keeps other roles off these pages)."""
    console.user.require(Role.OPERATOR)
    return console.user


def own_product(console: Console, slug: str) -> Product:
    """The operator's own product, or not found (also for another operator's listed product)."""
    versions.versions_visible(console.session, operator(console), slug)
    product = repository.by_slug(console.session, slug)
    assert product is not None
    return product


# -- my products ----------------------------------------------------------------------------------


@router.get("/products")
def products_page(console: ConsoleDep) -> Response:
    """My products by state: drafts, in review, returned, listed and delisted."""
    mine = service.present(console.session, service.catalogue(console.session, operator(console), mine=True))
    groups = [(state.value, [p for p in mine if p.status == state.value]) for state in STATES]
    return page(console, "operator/products.html", title="My products", crumbs=(("My products", None),), groups=groups)


# -- the wizard ------------------------------------------------------------------------------------


def _wizard(
    console: Console, values: dict[str, Any], errors: dict[str, str], status: int = 200, zone: str = ""
) -> Response:
    grants = grants_in_force(console)
    scope = scope_of(grants, zone or values.get("zone", ""))
    registered = resources.present(console.session, resources.visible(console.session, console.user))
    return page(
        console,
        "operator/product_new.html",
        title="New product",
        crumbs=(("My products", "/console/products"), ("New product", None)),
        grants=grants,
        scope=scope,
        resources=registered,
        values=values,
        errors=errors,
        plan_rows=range(PLAN_ROWS),
        kinds=[k.value for k in PlanKind],
        major_of=major_of,
        status_code=status,
    )


@router.get("/products/new")
def new_product(console: ConsoleDep, zone: str = "") -> Response:
    """Step 1 chooses a zone of the grant; step 2 (same page) the region, scenarios, resources and plans."""
    operator(console)
    return _wizard(console, {"zone": zone[:50]}, {}, zone=zone[:50])


@router.post("/products/new")
async def create_product(request: Request, console: ConsoleDep) -> Response:
    """Create the draft; a mistake (outside the grant, a price over the cap) comes back next to its field."""
    form = await request.form()
    lists: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            lists.setdefault(key, []).append(value[:20_000])
    one = {k: v[0] for k, v in lists.items()}
    values: dict[str, Any] = {**one, "scenarios": lists.get("scenarios", []), "resources": lists.get("resources", [])}
    try:
        scope = scope_of(grants_in_force(console), one.get("zone", ""))
        data = {
            "slug": one.get("slug", "").strip(),
            "title": one.get("title", "").strip(),
            "description": one.get("description", ""),
            "zone": one.get("zone", ""),
            "region": one.get("region", ""),
            "scenarios": values["scenarios"],
            "resources": values["resources"],
            "documentation": one.get("documentation", ""),
            "plans": plans_from_form(lists, scope["currency"]),
        }
        try:
            body = ProductIn.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            raise Unprocessable("invalid_request", detail=f"{field}: {first['msg']}") from error
        product = service.create_product(console.session, console.user, body)
    except MarketError as error:
        console.session.rollback()
        errors = form_errors(console, error, FIELD_OF_ERROR)
        if error.code == "invalid_request":
            detail = str(error.params.get("detail", ""))
            field = detail.split(":", 1)[0]
            if field in ("slug", "title", "region", "zone"):
                errors = {field: console.message(error)}
            elif detail.startswith("plan") or detail.startswith(FEES):
                errors = {"plans": console.message(error)}
        return _wizard(console, values, errors, error.status_code)
    return redirect(console, f"/console/products/{product.slug}?created=1")


# -- one product -----------------------------------------------------------------------------------


def _names(console: Console, user_ids: set[str]) -> dict[str, str]:
    found = {u.id: u.name for u in (console.session.get(User, i) for i in user_ids) if u is not None}
    return found


def _product_page(console: Console, slug: str, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    product = own_product(console, slug)
    shown = service.present(console.session, [product], detail=True, viewer=console.user)[0]
    events = list(service.history(console.session, console.user, slug))
    found = list(versions.versions_visible(console.session, console.user, slug))
    settings = access.get_settings(console.session, console.user, slug)
    return page(
        console,
        "operator/product.html",
        title=shown.title,
        subtitle=shown.slug,
        crumbs=(("My products", "/console/products"), (shown.slug, None)),
        p=shown,
        events=events,
        actors=_names(console, {e.actor_user_id for e in events}),
        versions=[versions.present_version(console.session, v) for v in reversed(found)],
        settings=settings,
        errors=errors or {},
        values={},
        scope={
            "cap": limits_of(shown.zone, shown.fee_limits),
            "currency": next((x.currency for x in shown.plans), "CNY"),
        },
        plan_rows=range(1),
        kinds=[k.value for k in PlanKind],
        major_of=major_of,
        status_code=status,
    )


@router.get("/products/{slug}")
def product_page(slug: str, console: ConsoleDep) -> Response:
    """One own product: state with its history (who, when, comment), plans beside the fee cap, versions, actions."""
    return _product_page(console, slug[:100])


@router.post("/products/{slug}/plans")
async def put_plan(slug: str, request: Request, console: ConsoleDep) -> Response:
    """Add or change one plan; a price over the cap is refused next to the plans."""
    form = await request.form()
    lists = {k: [v] for k, v in form.items() if isinstance(v, str)}
    try:
        product = own_product(console, slug)
        shown = service.present(console.session, [product], viewer=console.user)[0]
        currency = next((p.currency for p in shown.plans), "CNY")
        plans = plans_from_form(lists, currency)
        if not plans:
            raise Unprocessable("invalid_request", detail="plan: a code is needed")
        service.put_plan(console.session, console.user, slug, plans[0])
    except MarketError as error:
        console.session.rollback()
        return _product_page(console, slug, {"plans": console.message(error)}, error.status_code)
    return redirect(console, f"/console/products/{slug}?saved=1#plans")


@router.post("/products/{slug}/submit")
def submit(slug: str, console: ConsoleDep) -> Response:
    """Send the latest version for review (refused while a blocking audit finding is open)."""
    try:
        service.submit(console.session, console.user, slug)
    except MarketError as error:
        console.session.rollback()
        return _product_page(console, slug, {"submit": console.message(error)}, error.status_code)
    return redirect(console, f"/console/products/{slug}?submitted=1")


@router.post("/products/{slug}/delist")
def delist(slug: str, console: ConsoleDep, reason: Annotated[str, Form(max_length=5_000)] = "") -> Response:
    """Take a listed product off the catalogue, with the reason."""
    try:
        service.delist(console.session, console.user, slug, reason)
    except MarketError as error:
        console.session.rollback()
        return _product_page(console, slug, {"delist": console.message(error)}, error.status_code)
    return redirect(console, f"/console/products/{slug}")


@router.post("/products/{slug}/access-settings")
def access_settings(slug: str, console: ConsoleDep, auto_approve: Annotated[str, Form(max_length=5)] = "") -> Response:
    """Whether commercial access requests for the product are approved automatically."""
    access.set_settings(console.session, console.user, slug, auto_approve_commercial=auto_approve == "on")
    return redirect(console, f"/console/products/{slug}?saved=1#access")
