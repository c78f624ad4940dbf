"""The regulator's authorisations: list, create (zones, a tree of region codes, scenarios, validity, fee caps
per zone), and suspend, reinstate or revoke with a reason after seeing the products and agreements affected."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from market.accounts import service as accounts
from market.accounts.models import OrgKind
from market.clock import utcnow
from market.console.regulator.forms import day_start, minor_units, validation_detail, whole_minor_units, words
from market.console.vocabulary import N_, ZONES
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from products.governance import authorisations, impact, repository
from products.governance.schemas import REGION, AuthorisationIn, FeeCapIn

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/authorisations"
ACTIONS = {"suspend": N_("Suspend"), "reinstate": N_("Reinstate"), "revoke": N_("Revoke")}


@dataclass(frozen=True)
class Region:
    """A division code with its name and sub-divisions: the tree the grant form offers."""

    code: str
    name: str
    children: tuple[Region, ...] = ()


REGIONS = (
    Region(
        "CN",
        N_("China"),
        (
            Region(
                "CN-11",
                N_("Beijing"),
                (
                    Region("CN-11-01", N_("Dongcheng District")),
                    Region("CN-11-02", N_("Xicheng District")),
                    Region("CN-11-05", N_("Chaoyang District")),
                    Region("CN-11-08", N_("Haidian District")),
                ),
            ),
            Region("CN-31", N_("Shanghai"), (Region("CN-31-15", N_("Pudong New Area")),)),
            Region("CN-44", N_("Guangdong"), (Region("CN-44-01", N_("Guangzhou")), Region("CN-44-03", N_("Shenzhen")))),
            Region("CN-33", N_("Zhejiang"), (Region("CN-33-01", N_("Hangzhou")),)),
        ),
    ),
    Region("US", N_("United States"), (Region("US-NY", N_("New York")),)),
)
"""Administrative division codes (GB/T 2260 style under ISO 3166-2); a granted code covers its sub-divisions.
Codes outside the tree go in the form's free field."""

FIELD_OF_ERROR = {
    "operator_not_found": "operator",
    "console_zones_required": "zones",
    "console_regions_required": "regions",
    "console_invalid_region": "regions",
    "console_invalid_date": "valid_until",
    "console_invalid_validity": "valid_until",
    "console_invalid_amount": "fee_caps",
}


def _operators(console: Console) -> list[tuple[str, str]]:
    return [
        (org.id, org.name)
        for org in accounts.list_orgs(console.session, console.user)
        if org.kind == OrgKind.OPERATOR.value
    ]


@router.get("/authorisations")
def grants_page(console: ConsoleDep) -> Response:
    """Every authorisation, newest first, with scope, validity, caps and state."""
    found = authorisations.visible(console.session, console.user)
    shown = sorted(authorisations.present(console.session, found), key=lambda a: a.created_at, reverse=True)
    return page(
        console,
        "regulator/grants.html",
        title="Authorisations",
        crumbs=(("Authorisations", None),),
        grants=shown,
    )


def _form(console: Console, values: dict[str, object], errors: dict[str, str], status: int = 200) -> Response:
    return page(
        console,
        "regulator/grant_form.html",
        title="New authorisation",
        crumbs=(("Authorisations", BASE), ("New authorisation", None)),
        operators=_operators(console),
        zones=ZONES,
        regions=REGIONS,
        values=values,
        errors=errors,
        status_code=status,
    )


@router.get("/authorisations/new")
def grant_form(console: ConsoleDep) -> Response:
    """The grant form: operator, zones, regions, scenarios, validity and a fee cap for each zone."""
    authorisations.visible(console.session, console.user)  # the regulator's page: others get forbidden_role
    return _form(console, {"zones": [], "regions": []}, {})


def _grant_in(form: FormData) -> AuthorisationIn:
    """The grant form's fields as the API's body; each problem is raised with the code of its field."""
    text = {key: str(form.get(key) or "") for key in form}
    zones = [str(z) for z in form.getlist("zones")]
    if not zones:
        raise Unprocessable("console_zones_required")
    regions = list(dict.fromkeys([str(r) for r in form.getlist("regions")] + words(text.get("other_regions", ""))))
    if not regions:
        raise Unprocessable("console_regions_required")
    for region in regions:
        if not re.fullmatch(REGION, region):
            raise Unprocessable("console_invalid_region", region=region[:30])
    valid_from = day_start(text.get("valid_from", ""), "valid_from")
    valid_until = day_start(text.get("valid_until", ""), "valid_until")
    if valid_until is None or valid_until <= (valid_from or utcnow()):
        raise Unprocessable("console_invalid_validity")
    caps = [
        FeeCapIn(
            zone=zone,
            max_per_query_minor=whole_minor_units(text.get(f"cap_{zone}_per_query", ""), f"{zone} per query"),
            max_per_gb_minor=minor_units(text.get(f"cap_{zone}_per_gb", ""), f"{zone} per GB", places=6),
            max_monthly_fee_minor=whole_minor_units(text.get(f"cap_{zone}_monthly", ""), f"{zone} monthly fee"),
            max_per_tenth_epsilon_minor=whole_minor_units(
                text.get(f"cap_{zone}_per_tenth_epsilon", ""), f"{zone} per 0.1 epsilon"
            ),
        )
        for zone in zones
    ]
    return AuthorisationIn(
        operator=text.get("operator", ""),
        zones=zones,
        regions=regions,
        scenarios=words(text.get("scenarios", "")),
        valid_from=valid_from,
        valid_until=valid_until,
        fee_caps=caps,
        note=text.get("note", "")[:5_000],
    )


@router.post("/authorisations/new")
async def create_grant(request: Request, console: ConsoleDep) -> Response:
    """Grant the authorisation; a mistake comes back next to its field with the form as filled."""
    form = await request.form()
    authorisations.visible(console.session, console.user)  # forbidden_role before any field is read
    values: dict[str, object] = {key: str(form.get(key) or "")[:5_000] for key in form}
    values["zones"] = [str(z) for z in form.getlist("zones")]
    values["regions"] = [str(r) for r in form.getlist("regions")]
    try:
        data = _grant_in(form)
        granted = authorisations.grant(console.session, console.user, data)
    except ValidationError as error:
        console.session.rollback()
        failure = Unprocessable("invalid_request", detail=validation_detail(error))
        return _form(console, values, form_errors(console, failure, {}), failure.status_code)
    except MarketError as error:
        console.session.rollback()
        return _form(console, values, form_errors(console, error, FIELD_OF_ERROR), error.status_code)
    return redirect(console, f"{BASE}/{granted.id}?granted=1")


@router.get("/authorisations/{authorisation_id}")
def grant_page(authorisation_id: str, console: ConsoleDep) -> Response:
    """One authorisation: scope, validity, fee caps, history and what the regulator can do next."""
    grant = authorisations.get_visible(console.session, console.user, authorisation_id[:40])
    shown = authorisations.present(console.session, [grant])[0]
    return page(
        console,
        "regulator/grant.html",
        title="Authorisation",
        subtitle=shown.operator_name,
        crumbs=(("Authorisations", BASE), (shown.id, None)),
        grant=shown,
        events=repository.events_of(console.session, grant.id),
        actions=[a for a, (allowed, _) in authorisations.TRANSITIONS.items() if grant.status in allowed],
    )


def _confirm(console: Console, authorisation_id: str, action: str, reason: str, error: str, status: int) -> Response:
    grant = authorisations.get_visible(console.session, console.user, authorisation_id)
    shown = authorisations.present(console.session, [grant])[0]
    affected = impact.grant_impact(console.session, console.user, grant.id) if action != "reinstate" else []
    return page(
        console,
        "regulator/grant_change.html",
        title=ACTIONS[action],
        subtitle=shown.operator_name,
        crumbs=(("Authorisations", BASE), (shown.id, f"{BASE}/{shown.id}"), (ACTIONS[action], None)),
        grant=shown,
        action=action,
        affected=affected,
        agreements=sum(len(p.agreements) for p in affected),
        reason=reason,
        error=error,
        status_code=status,
    )


def _action(action: str) -> str:
    if action not in ACTIONS:
        raise Unprocessable("console_unknown_action", action=action[:20])
    return action


@router.get("/authorisations/{authorisation_id}/{action}")
def confirm_change(authorisation_id: str, action: str, console: ConsoleDep) -> Response:
    """Before suspending or revoking: the listed products this delists and the agreements that stop, and a reason."""
    return _confirm(console, authorisation_id[:40], _action(action), "", "", 200)


@router.post("/authorisations/{authorisation_id}/{action}")
def change(
    authorisation_id: str, action: str, console: ConsoleDep, reason: Annotated[str, Form(max_length=5_000)] = ""
) -> Response:
    """Suspend, reinstate or revoke with the reason; an empty reason is asked for again."""
    action = _action(action)
    if not reason.strip():
        message = console.message(Unprocessable("console_reason_required"))
        return _confirm(console, authorisation_id[:40], action, reason, message, 422)
    try:
        authorisations.change_status(console.session, console.user, authorisation_id[:40], action, reason.strip())
    except MarketError as error:
        console.session.rollback()
        return _confirm(console, authorisation_id[:40], action, reason, console.message(error), error.status_code)
    return redirect(console, f"{BASE}/{authorisation_id[:40]}?changed={action}")
