"""The admin's pages: organisations (create, view, edit the profile invoices print), users (create, change
role, deactivate, set a password), API keys (issue, shown once; list by prefix; revoke) and the activity log.
Every action calls the accounts services, which check the role and write the activity log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from market.accounts import admin, service, signin
from market.accounts.models import PROFILE_FIELDS, ROLES_BY_KIND, OrgKind, Role, User
from market.console.vocabulary import N_
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable

router = APIRouter(prefix="/console/admin", include_in_schema=False, dependencies=[Depends(check_csrf)])

ORG_FIELDS = {
    "duplicate_organisation": "name",
    "uscc_length": "uscc",
    "uscc_characters": "uscc",
    "uscc_division": "uscc",
    "uscc_checksum": "uscc",
    "invalid_bank_account": "bank_account",
    "invalid_request": "",
}
USER_FIELDS = {
    "duplicate_user": "email",
    "role_kind_mismatch": "role",
    "password_too_short": "password",
    "organisation_not_found": "org_id",
}
WORDS = (
    N_("org_created"),
    N_("org_updated"),
    N_("user_created"),
    N_("user_role_changed"),
    N_("user_deactivated"),
    N_("user_reactivated"),
    N_("password_set"),
    N_("key_issued"),
    N_("key_revoked"),
    N_("uscc"),
    N_("address"),
    N_("contact_name"),
    N_("contact_phone"),
    N_("contact_email"),
    N_("bank_name"),
    N_("bank_account"),
    N_("authority"),
    N_("platform"),
    N_("deactivated"),
    N_("Organisations"),
    N_("Activity"),
    N_("User"),
)
"""Words the admin's templates translate from data: activity codes, profile fields, kinds, states."""
KINDS = [k.value for k in OrgKind]
ROLES = [r.value for r in Role]


def _org_name_map(console: Console) -> dict[str, str]:
    return {o.id: o.name for o in service.list_orgs(console.session, console.user)}


# -- organisations ------------------------------------------------------------------------------------


def _orgs_page(
    console: Console, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None, status: int = 200
) -> Response:
    console.user.require(Role.ADMIN)
    return page(
        console,
        "admin/orgs.html",
        title="Organisations",
        crumbs=(("Organisations", None),),
        orgs=service.list_orgs(console.session, console.user),
        kinds=KINDS,
        errors=errors or {},
        form=form or {},
        status_code=status,
    )


@router.get("")
@router.get("/orgs")
def orgs_page(console: ConsoleDep) -> Response:
    """Every organisation, and a form to register one."""
    return _orgs_page(console)


@router.post("/orgs")
def create_org(
    console: ConsoleDep,
    name: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        if not name.strip():
            raise Unprocessable("invalid_request", detail="name")
        if kind not in KINDS:
            raise Unprocessable("invalid_request", detail="kind")
        org = service.create_org(console.session, console.user, name=name.strip(), kind=OrgKind(kind))
    except MarketError as error:
        console.session.rollback()
        errors = form_errors(console, error, {**ORG_FIELDS, "invalid_request": "name" if not name.strip() else "kind"})
        return _orgs_page(console, errors=errors, form={"name": name, "kind": kind}, status=error.status_code)
    return redirect(console, f"/console/admin/orgs/{org.id}?done=created")


def _org_page(
    console: Console,
    org_id: str,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    console.user.require(Role.ADMIN)
    org = service.visible_org(console.session, console.user, org_id)
    values = {"name": org.name, **{f: getattr(org, f) or "" for f in PROFILE_FIELDS}}
    values.update(form or {})
    return page(
        console,
        "admin/org.html",
        title="Organisation",
        subtitle=org.name,
        crumbs=(("Organisations", "/console/admin/orgs"), (org.name, None)),
        org=org,
        values=values,
        fields=PROFILE_FIELDS,
        users=admin.users(console.session, console.user, org.id),
        roles=sorted(r.value for r in ROLES_BY_KIND[OrgKind(org.kind)]),
        errors=errors or {},
        status_code=status,
    )


@router.get("/orgs/{org_id}")
def org_page(org_id: str, console: ConsoleDep) -> Response:
    """One organisation: its profile (tax ID, bank, contact) to edit, and its users."""
    return _org_page(console, org_id[:32])


@router.post("/orgs/{org_id}")
async def update_org(org_id: str, console: ConsoleDep) -> Response:
    form = await console.request.form()
    typed = {name: str(form.get(name, ""))[:500] for name in ("name", *PROFILE_FIELDS)}
    changes: dict[str, str | None] = {f: (typed[f].strip() or None) for f in PROFILE_FIELDS}
    if typed["name"].strip():
        changes["name"] = typed["name"].strip()
    try:
        service.update_org(console.session, console.user, org_id[:32], changes)
    except MarketError as error:
        console.session.rollback()
        return _org_page(
            console, org_id[:32], errors=form_errors(console, error, ORG_FIELDS), form=typed, status=error.status_code
        )
    return redirect(console, f"/console/admin/orgs/{org_id[:32]}?done=saved")


# -- users ----------------------------------------------------------------------------------------------


def _users_page(
    console: Console, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None, status: int = 200
) -> Response:
    found = admin.users(console.session, console.user)
    return page(
        console,
        "admin/users.html",
        title="Users",
        crumbs=(("Users", None),),
        users=found,
        orgs=service.list_orgs(console.session, console.user),
        org_names=_org_name_map(console),
        roles=ROLES,
        errors=errors or {},
        form=form or {},
        status_code=status,
    )


@router.get("/users")
def users_page(console: ConsoleDep) -> Response:
    """Every user with organisation, role and state, and a form to add one."""
    return _users_page(console)


@router.post("/users")
def create_user(
    console: ConsoleDep,
    org_id: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Create a user; with a password it can sign in at once, without one an admin sets it later."""
    form = {"org_id": org_id, "name": name, "email": email, "role": role}
    try:
        console.user.require(Role.ADMIN)
        if not name.strip() or "@" not in email:
            raise Unprocessable("invalid_request", detail="name, email")
        if role not in ROLES:
            raise Unprocessable("role_kind_mismatch", role=role or "?", kind="?", allowed=", ".join(ROLES))
        org = service.get_org(console.session, org_id)
        user = service.create_user(
            console.session, console.user, org=org, name=name.strip(), email=email.strip().lower(), role=Role(role)
        )
        if password:
            signin.set_password(console.session, console.user, user.id, password)
    except MarketError as error:
        console.session.rollback()
        fields = {**USER_FIELDS, "invalid_request": "email" if "@" not in email else "name"}
        return _users_page(console, errors=form_errors(console, error, fields), form=form, status=error.status_code)
    return redirect(console, f"/console/admin/users/{user.id}?done=created")


def _user_page(
    console: Console, user_id: str, *, errors: dict[str, str] | None = None, issued: str = "", status: int = 200
) -> Response:
    found = admin.user(console.session, console.user, user_id)
    org = service.get_org(console.session, found.org_id)
    return page(
        console,
        "admin/user.html",
        title="User",
        subtitle=found.email,
        crumbs=(("Users", "/console/admin/users"), (found.email, None)),
        user=found,
        org=org,
        roles=sorted(r.value for r in ROLES_BY_KIND[OrgKind(org.kind)]),
        keys=admin.keys(console.session, console.user, user_id=found.id),
        issued=issued,
        errors=errors or {},
        status_code=status,
    )


@router.get("/users/{user_id}")
def user_page(user_id: str, console: ConsoleDep) -> Response:
    """One user: role, state, password and API keys."""
    return _user_page(console, user_id[:32])


def _user_action(console: Console, user_id: str, action: str, field: str, run: Callable[[], object]) -> Response:
    try:
        run()
    except MarketError as error:
        console.session.rollback()
        return _user_page(console, user_id, errors={field: console.message(error)}, status=error.status_code)
    return redirect(console, f"/console/admin/users/{user_id}?done={action}")


@router.post("/users/{user_id}/role")
def change_role(user_id: str, console: ConsoleDep, role: Annotated[str, Form(max_length=20)] = "") -> Response:
    def run() -> None:
        if role not in ROLES:
            raise Unprocessable("role_kind_mismatch", role=role or "?", kind="?", allowed=", ".join(ROLES))
        admin.change_role(console.session, console.user, user_id[:32], Role(role))

    return _user_action(console, user_id[:32], "role", "role", run)


@router.post("/users/{user_id}/active")
def set_active(user_id: str, console: ConsoleDep, active: Annotated[str, Form(max_length=1)] = "0") -> Response:
    return _user_action(
        console,
        user_id[:32],
        "activated" if active == "1" else "deactivated",
        "active",
        lambda: admin.set_active(console.session, console.user, user_id[:32], active == "1"),
    )


@router.post("/users/{user_id}/password")
def set_password(user_id: str, console: ConsoleDep, password: Annotated[str, Form(max_length=200)] = "") -> Response:
    return _user_action(
        console,
        user_id[:32],
        "password",
        "password",
        lambda: signin.set_password(console.session, console.user, user_id[:32], password),
    )


@router.post("/users/{user_id}/keys")
def issue_key(user_id: str, console: ConsoleDep, label: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Issue an API key: the page shows it once (it is never stored, nor put in a URL)."""
    try:
        found = admin.user(console.session, console.user, user_id[:32])
        _, clear = service.issue_key(console.session, console.user, user=found, label=label.strip())
    except MarketError as error:
        console.session.rollback()
        return _user_page(console, user_id[:32], errors={"label": console.message(error)}, status=error.status_code)
    return _user_page(console, found.id, issued=clear, status=201)


# -- API keys and the activity log ---------------------------------------------------------------------


@router.get("/keys")
def keys_page(console: ConsoleDep, prefix: str = "") -> Response:
    """Every API key by its prefix (never the key), with its owner; revoke from here."""
    found = admin.keys(console.session, console.user, prefix=prefix[:16])
    owners: dict[str, User] = {u.id: u for u in admin.users(console.session, console.user)}
    return page(
        console,
        "admin/keys.html",
        title="API keys",
        crumbs=(("API keys", None),),
        keys=found,
        owners=owners,
        prefix=prefix[:16],
    )


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, console: ConsoleDep, back: Annotated[str, Form(max_length=200)] = "") -> Response:
    console.user.require(Role.ADMIN)
    service.revoke_key(console.session, console.user, key_id[:32])
    return redirect(console, back if back.startswith("/console/admin/") else "/console/admin/keys?done=revoked")


@router.get("/activity")
def activity_page(console: ConsoleDep) -> Response:
    """What admins did, newest first."""
    found = admin.activity(console.session, console.user)
    people = {u.id: u.email for u in admin.users(console.session, console.user)}
    return page(
        console,
        "admin/activity.html",
        title="Activity",
        crumbs=(("Activity", None),),
        entries=found,
        people=people,
    )
