"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from market import i18n
from market.accounts import signin
from market.console.web import (
    LANG_COOKIE,
    SESSION_COOKIE,
    ConsoleDep,
    ReadConsoleDep,
    check_csrf,
    home_of,
    page,
    redirect,
    set_cookie,
)
from market.db import begin_write_now
from market.errors import MarketError

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

LANG_COOKIE_AGE = 365 * 24 * 3600


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else ""


@router.get("/login")
def login_form(console: ConsoleDep, next: str = "") -> Response:
    """The sign-in form: e-mail and password."""
    if console.principal is not None:
        return redirect(console, _safe_next(next) or home_of(console.principal.role))
    return page(console, "login.html", title="Sign in", next=_safe_next(next), email="", error=None)


@router.post("/login")
def login(
    console: ReadConsoleDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Check the password and open a session; the role's home page (or `next`) follows.

    The password is checked (argon2, tens of milliseconds of CPU) in a reader, without the SQLite writer lock;
    the failed attempt or the new session is then written under it (market.db.begin_write_now)."""
    client = console.request.client.host if console.request.client else "unknown"
    try:
        with console.session.no_autoflush:
            signed = signin.sign_in(console.session, email=email, password=password, client=client)
        if console.session.new or console.session.dirty:
            begin_write_now(console.session)
    except MarketError as error:
        response = page(
            console,
            "login.html",
            title="Sign in",
            next=_safe_next(next),
            email=email,
            error=console.message(error),
            status_code=error.status_code,
        )
        response.headers.update(error.headers)
        return response
    if signed is None:
        return page(
            console,
            "login.html",
            title="Sign in",
            next=_safe_next(next),
            email=email,
            error=console.message(MarketError("sign_in_failed")),
            status_code=401,
        )
    response = redirect(console, _safe_next(next) or home_of(signed.principal.role))
    set_cookie(
        response, console.request, SESSION_COOKIE, signed.token, max_age=int(signin.SESSION_LIFETIME.total_seconds())
    )
    return response


@router.post("/logout")
def logout(console: ConsoleDep) -> Response:
    """End the session and go back to the catalogue."""
    signin.sign_out(console.session, console.request.cookies.get(SESSION_COOKIE))
    response = redirect(console, "/")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/lang")
def switch_language(
    console: ConsoleDep, lang: Annotated[str, Form(max_length=10)], next: Annotated[str, Form(max_length=2000)] = "/"
) -> Response:
    """Remember the chosen language in a cookie and go back to the page."""
    response = redirect(console, _safe_next(next) or "/")
    if lang in i18n.LOCALES:
        set_cookie(response, console.request, LANG_COOKIE, lang, max_age=LANG_COOKIE_AGE)
    return response
