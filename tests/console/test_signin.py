"""Web sign-in: passwords, session cookies, CSRF, rate limits, logout and the admin's password route."""

from __future__ import annotations

from datetime import timedelta

from market import clock
from market.accounts.models import Role, User
from tests.conftest import Market
from tests.console.helpers import PASSWORD, browser, csrf_of, set_password, sign_in


def test_login_form_has_email_and_password_inputs(market: Market) -> None:
    page = browser(market).get("/login")
    assert page.status_code == 200
    assert 'name="email"' in page.text and 'name="password"' in page.text and 'name="csrf_token"' in page.text


def test_buyer_signs_in_to_its_home_and_the_cookie_is_httponly_samesite(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    email = set_password(market, buyer)
    client = browser(market)
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/console/query"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("market_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get("/console/access").status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_answer(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    email = set_password(market, buyer)
    client = browser(market)
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"email": email, "password": "not it at all", "csrf_token": token})
    unknown = client.post("/login", data={"email": "nobody@x.example", "password": "not it", "csrf_token": token})
    assert wrong.status_code == unknown.status_code == 401
    assert "market_session" not in client.cookies
    assert client.get("/console/access").status_code == 303


def test_a_form_without_the_csrf_token_is_refused(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    email = set_password(market, buyer)
    client = browser(market)
    client.get("/login")
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": "x" * 43})
    assert response.status_code == 403 and "csrf_failed" in response.text
    assert "market_session" not in client.cookies


def test_signed_in_pages_refuse_a_forged_post(market: Market) -> None:
    client = sign_in(market, market.actor(Role.BUYER))
    forged = client.post("/logout")
    assert forged.status_code == 403
    assert client.get("/console/access").status_code == 200


def test_logout_ends_the_session_on_the_server(market: Market) -> None:
    client = sign_in(market, market.actor(Role.BUYER))
    stolen = client.cookies["market_session"]
    token = csrf_of(client.get("/console/access").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    replay = browser(market)
    replay.cookies.set("market_session", stolen)
    assert replay.get("/console/access").status_code == 303


def test_sign_ins_are_rate_limited_per_account_with_retry_after(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    email = set_password(market, buyer)
    client = browser(market)
    token = csrf_of(client.get("/login").text)
    statuses = [
        client.post("/login", data={"email": email, "password": f"guess {n}", "csrf_token": token}).status_code
        for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    right = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    with clock.travel_to(clock.utcnow() + timedelta(minutes=16)):
        later = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert later.status_code == 303


def test_sign_ins_are_rate_limited_per_client_across_accounts(market: Market) -> None:
    client = browser(market)
    token = csrf_of(client.get("/login").text)
    statuses = {
        client.post("/login", data={"email": f"u{n}@x.example", "password": "p", "csrf_token": token}).status_code
        for n in range(31)
    }
    assert 429 in statuses


def test_admin_sets_a_password_over_the_api_and_old_sessions_end(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    client = sign_in(market, buyer)
    admin = market.actor(Role.ADMIN)
    url = f"/v1/users/{buyer.principal.user_id}/password"
    short = market.client.put(url, headers=admin.headers, json={"password": "short"})
    assert short.status_code == 422 and short.json()["error"]["code"] == "password_too_short"
    assert market.client.put(url, headers=buyer.headers, json={"password": "x" * 20}).status_code == 403
    assert market.client.put(url, headers=admin.headers, json={"password": "a brand new password"}).status_code == 200
    assert client.get("/console/access").status_code == 303
    fresh = browser(market)
    token = csrf_of(fresh.get("/login").text)
    email = market.client.get("/v1/me", headers=buyer.headers).json()["user_id"]
    with market.database.transaction() as session:
        email = session.get(User, email).email
    signed = fresh.post("/login", data={"email": email, "password": "a brand new password", "csrf_token": token})
    assert signed.status_code == 303


def test_next_never_leaves_the_site(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    email = set_password(market, buyer)
    client = browser(market)
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/console/query"
