"""The admin's console pages over HTTP: organisations with their profile, users (create, role, deactivate,
password), API keys (shown once, found by prefix, revoked) and the activity log; other roles refused."""

from __future__ import annotations

import re

from market.accounts.models import Role
from tests.conftest import Market
from tests.console.helpers import PASSWORD, browser, csrf_of, post_form, sign_in

EN = {"Accept-Language": "en"}
USCC = "91350100M000100Y43"
"""A valid unified social credit code (GB 32100-2015 checksum)."""


def test_admin_registers_an_org_and_a_user_issues_and_revokes_a_key_and_deactivates_the_user(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    client = sign_in(market, admin)
    client.headers.update(EN)

    created = post_form(
        client, "/console/admin/orgs", "/console/admin/orgs", {"name": "Harbour Freight", "kind": "buyer"}
    )
    assert created.status_code == 303
    org_page = created.headers["location"].split("?")[0]
    org_id = org_page.rsplit("/", 1)[1]
    duplicate = post_form(
        client, "/console/admin/orgs", "/console/admin/orgs", {"name": "Harbour Freight", "kind": "buyer"}
    )
    assert duplicate.status_code == 409 and 'id="name-error"' in duplicate.text
    bad = post_form(client, org_page, org_page, {"name": "Harbour Freight", "uscc": "91350100M000100Y44"})
    assert bad.status_code == 422 and 'id="uscc-error"' in bad.text and 'value="91350100M000100Y44"' in bad.text
    saved = post_form(
        client,
        org_page,
        org_page,
        {
            "name": "Harbour Freight",
            "uscc": USCC,
            "bank_name": "ICBC Fuzhou",
            "bank_account": "6222 0202 0001 2345",
            "contact_email": "ap@harbour.example",
        },
    )
    assert saved.status_code == 303
    profile = market.client.get(f"/v1/orgs/{org_id}", headers=admin.headers).json()
    assert profile["uscc"] == USCC and profile["bank_account"] == "6222 0202 0001 2345"

    wrong_role = post_form(
        client,
        "/console/admin/users",
        "/console/admin/users",
        {"org_id": org_id, "name": "Li Na", "email": "li@harbour.example", "role": "finance"},
    )
    assert wrong_role.status_code == 422 and 'id="role-error"' in wrong_role.text
    short = post_form(
        client,
        "/console/admin/users",
        "/console/admin/users",
        {"org_id": org_id, "name": "Li Na", "email": "li@harbour.example", "role": "buyer", "password": "short"},
    )
    assert short.status_code == 422 and 'id="password-error"' in short.text
    made = post_form(
        client,
        "/console/admin/users",
        "/console/admin/users",
        {"org_id": org_id, "name": "Li Na", "email": "li@harbour.example", "role": "buyer", "password": PASSWORD},
    )
    assert made.status_code == 303
    user_page = made.headers["location"].split("?")[0]

    issued = post_form(client, user_page, f"{user_page}/keys", {"label": "ERP"})
    assert issued.status_code == 201
    key = re.search(r'id="issued-key">([^<]+)<', issued.text)
    assert key and key.group(1).startswith("mk_")
    clear = key.group(1)
    assert market.client.get("/v1/me", headers={"Authorization": f"Bearer {clear}"}).status_code == 200
    assert clear not in client.get(user_page).text, "the key is shown once"
    listed = client.get("/console/admin/keys", params={"prefix": clear[:10]})
    assert listed.text.count("<tr>") == 2 and clear[:10] in listed.text and clear not in listed.text
    key_id = re.search(r"/console/admin/keys/(key_\w+)/revoke", listed.text)
    assert key_id
    revoked = client.post(f"/console/admin/keys/{key_id.group(1)}/revoke", data={"csrf_token": csrf_of(listed.text)})
    assert revoked.status_code == 303
    assert market.client.get("/v1/me", headers={"Authorization": f"Bearer {clear}"}).status_code == 401

    # The new user signs in; the admin deactivates it: its session ends and it cannot sign in again.
    person = browser(market)
    form = person.get("/login")
    assert (
        person.post(
            "/login", data={"email": "li@harbour.example", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
        ).status_code
        == 303
    )
    assert person.get("/console/invoices").status_code == 200
    off = post_form(client, user_page, f"{user_page}/active", {"active": "0"})
    assert off.status_code == 303
    assert person.get("/console/invoices").status_code == 303
    again = person.post(
        "/login", data={"email": "li@harbour.example", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
    )
    assert again.status_code != 303
    on = post_form(client, user_page, f"{user_page}/active", {"active": "1"})
    assert on.status_code == 303
    reset = post_form(client, user_page, f"{user_page}/password", {"password": "another long password"})
    assert reset.status_code == 303
    self_page = f"/console/admin/users/{admin.principal.user_id}"
    own = post_form(client, self_page, f"{self_page}/active", {"active": "0"})
    assert own.status_code == 409 and "another admin" in own.text

    log = client.get("/console/admin/activity").text
    for action in (
        "org_created",
        "org_updated",
        "user_created",
        "password_set",
        "key_issued",
        "key_revoked",
        "user_deactivated",
        "user_reactivated",
    ):
        assert action in log or action.replace("_", " ") in log.lower(), action


def test_other_roles_cannot_open_admin_pages(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    target = market.actor(Role.BUYER)
    for role in (Role.BUYER, Role.FINANCE, Role.OPERATOR):
        client = sign_in(market, market.actor(role))
        for path in (
            "/console/admin/orgs",
            f"/console/admin/orgs/{target.principal.org_id}",
            "/console/admin/users",
            f"/console/admin/users/{target.principal.user_id}",
            "/console/admin/keys",
            "/console/admin/activity",
        ):
            assert client.get(path).status_code in (403, 404), (role, path)
        token = csrf_of(client.get("/").text)
        for action, data in (
            (f"/console/admin/users/{target.principal.user_id}/active", {"active": "0"}),
            (f"/console/admin/users/{target.principal.user_id}/password", {"password": "x" * 20}),
            (f"/console/admin/users/{target.principal.user_id}/keys", {"label": "mine now"}),
            ("/console/admin/orgs", {"name": "Mine", "kind": "buyer"}),
        ):
            response = client.post(action, data={**data, "csrf_token": token})
            assert response.status_code in (403, 404), (role, action, response.status_code)
    assert market.client.get("/v1/me", headers=target.headers).status_code == 200
    assert market.client.get("/v1/keys", headers=admin.headers).status_code == 200
