"""Signing in to the console through its pages, as a browser would (form, cookies, CSRF token)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from market.accounts import signin
from tests.conftest import Actor, Market

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def set_password(market: Market, actor: Actor, password: str = PASSWORD) -> str:
    """Give the actor a web password (as the admin's API route or the demo does); returns its e-mail."""
    with market.database.transaction() as session:
        user = signin.set_password(session, None, actor.principal.user_id, password)
        return user.email


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def browser(market: Market) -> TestClient:
    """A fresh client with its own cookie jar, on the same app."""
    return TestClient(market.client.app, raise_server_exceptions=False, follow_redirects=False)


def sign_in(market: Market, actor: Actor, password: str = PASSWORD) -> TestClient:
    """A client signed in as `actor` through the sign-in form."""
    email = set_password(market, actor, password)
    client = browser(market)
    form = client.get("/login")
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(form.text)})
    assert response.status_code == 303, response.text
    return client


def post_form(client: TestClient, page: str, action: str, data: dict[str, str]) -> object:
    """Open `page`, take its CSRF token, and send `data` to `action` as the page's form would."""
    token = csrf_of(client.get(page).text)
    return client.post(action, data={**data, "csrf_token": token})
