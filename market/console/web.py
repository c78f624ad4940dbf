"""The console's machinery: templates, the signed-in person, the language, CSRF, navigation and error pages.

Pages are server-rendered Jinja2 templates; every string goes through gettext (`{{ _("...") }}`). A page
route takes `Console` (the request's locale, principal and CSRF token) and returns `page(...)`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from market import i18n
from market.accounts import signin
from market.accounts.models import Role
from market.accounts.service import Principal
from market.deps import get_database, writes
from market.errors import Forbidden, MarketError
from market.messages import render

HERE = Path(__file__).parent
SESSION_COOKIE = "market_session"
CSRF_COOKIE = "market_csrf"
LANG_COOKIE = "market_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class NavItem:
    """One entry of a role's navigation: the path and its English label (translated in the template)."""

    path: str
    label: str


NAVIGATION: dict[Role | None, tuple[NavItem, ...]] = {
    None: (NavItem("/", "Catalogue"),),
    Role.BUYER: (
        NavItem("/", "Catalogue"),
        NavItem("/console/access", "Access"),
        NavItem("/console/query", "Query"),
        NavItem("/console/usage", "Usage"),
        NavItem("/console/invoices", "Invoices"),
    ),
    Role.FINANCE: (
        NavItem("/console/finance/periods", "Billing periods"),
        NavItem("/console/finance/invoices", "Invoices"),
        NavItem("/console/finance/payments", "Payments received"),
        NavItem("/console/finance/ledger", "Ledger"),
        NavItem("/console/finance/statements", "Settlement statements"),
        NavItem("/console/finance/charts", "Charts"),
        NavItem("/console/revenue-shares", "Revenue shares"),
    ),
    Role.ADMIN: (
        NavItem("/console/admin/orgs", "Organisations"),
        NavItem("/console/admin/users", "Users"),
        NavItem("/console/admin/keys", "API keys"),
        NavItem("/console/admin/activity", "Activity"),
    ),
    Role.OPERATOR: (
        NavItem("/", "Catalogue"),
        NavItem("/console/products", "My products"),
        NavItem("/console/requests", "Access requests"),
        NavItem("/console/sales", "Usage and revenue"),
    ),
}
"""Each role's navigation. A later part adds its role's pages here (and its routers in routes.py)."""
NAVIGATION[Role.REGULATOR] = (
    NavItem("/console/regulator/dashboard", "Dashboard"),
    NavItem("/console/regulator/authorisations", "Authorisations"),
    NavItem("/console/regulator/resources", "Resources"),
    NavItem("/console/regulator/registrations", "Registrations"),
    NavItem("/console/regulator/reviews", "Reviews"),
    NavItem("/console/regulator/requests", "Public-interest requests"),
    NavItem("/console/regulator/allowed-revenue", "Allowed revenue"),
    NavItem("/console/regulator/disclosures", "Disclosure"),
    NavItem("/console/regulator/audit", "Audit log"),
    NavItem("/console/regulator/agreements", "Agreements"),
    NavItem("/console/revenue-shares", "Revenue shares"),
)
NAVIGATION[Role.SOURCE] = (
    NavItem("/console/source/resources", "Resources"),
    NavItem("/console/source/statements", "Statements"),
)

NOTICES = NavItem("/console/notices", "Public notices")
"""Registrations in public notice (公示), where any signed-in organisation may object (con-reg2)."""
for _role in Role:
    if _role in NAVIGATION and _role != Role.REGULATOR and NOTICES not in NAVIGATION[_role]:
        NAVIGATION[_role] = (*NAVIGATION[_role], NOTICES)

HOME: dict[Role, str] = {Role.BUYER: "/console/query", Role.OPERATOR: "/console/products"}
HOME.update({Role.FINANCE: "/console/finance/periods", Role.ADMIN: "/console/admin/users"})
"""Where a role lands after signing in; roles without pages yet land on the catalogue."""
HOME[Role.REGULATOR] = "/console/regulator/dashboard"
HOME[Role.SOURCE] = "/console/source/resources"


def home_of(role: Role) -> str:
    """The role's home page."""
    return HOME.get(role, "/")


def navigation(role: Role | None) -> tuple[NavItem, ...]:
    """The navigation for a role (the catalogue only for roles whose pages are not built yet)."""
    return NAVIGATION.get(role, NAVIGATION[None])


@dataclass(frozen=True)
class Vendored:
    """Vendored libraries found under static/vendor (ECharts, CodeMirror), loaded when present."""

    js: tuple[str, ...]
    css: tuple[str, ...]


def vendored() -> Vendored:
    """The vendored chart and editor assets; pages fall back to their own SVG chart and preview without them."""
    base = HERE / "static" / "vendor"
    found: dict[str, list[str]] = {"js": [], "css": []}
    for pattern in ("echarts*.min.js", "codemirror*.js", "codemirror*.css", "sql*.js"):
        for path in sorted(base.rglob(pattern)) if base.is_dir() else []:
            found[path.suffix.lstrip(".")].append("/console/static/" + path.relative_to(HERE / "static").as_posix())
    return Vendored(tuple(found["js"]), tuple(found["css"]))


VENDORED = vendored()


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(("html",)),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    return env


ENV = _environment()


@dataclass
class Console:
    """One page request: who is signed in (or None), the locale, the CSRF token, and a DB session."""

    request: Request
    session: Session
    principal: Principal | None
    locale: str
    csrf_token: str
    new_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> Principal:
        """The signed-in principal; signed-out visitors are sent to the sign-in page."""
        return signin.require_session(self.principal)

    def buyer(self) -> Principal:
        """The signed-in buyer (the service layer checks the role again)."""
        self.user.require(Role.BUYER)
        return self.user

    def money(self, amount_minor: int | None, currency: str) -> str:
        return i18n.format_money(int(amount_minor or 0), currency, self.locale)

    def when(self, value: datetime | date | None) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return i18n.format_datetime(value, self.locale)
        return i18n.format_date(value, self.locale)

    def number(self, value: int | float | None) -> str:
        return "" if value is None else i18n.format_number(value, self.locale)

    def exact(self, value: Decimal | float | None) -> str:
        """An exact decimal (epsilon, delta) with all its digits: 0.3, never 0.30000000000000004 or 1e-07."""
        return "" if value is None else i18n.format_exact(value, self.locale)

    def translate(self, msgid: str, **params: Any) -> str:
        """A gettext msgid in the page's language, its {name} placeholders filled."""
        return i18n.gettext(self.locale, msgid, **params)

    def now_year(self) -> int:
        """The current year, on the injectable clock."""
        from market.clock import utcnow

        return utcnow().year

    def message(self, error: MarketError) -> str:
        """An error's message in the page's language (the shared catalogue of messages)."""
        return render(error.code, self.locale, **error.params)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def get_console(request: Request) -> Generator[Console, None, None]:
    """The page's context, inside one transaction committed when the route returns (rolled back if it raises).

    A form post's transaction is a writer (market.deps.writes): on SQLite it takes the writer lock first
    (market.db.begin_write), waiting in the kernel's queue with no pooled connection, never in SQLite's
    busy handler. A page stays a reader."""
    yield from _console(request, write=writes(request))


def get_read_console(request: Request) -> Generator[Console, None, None]:
    """get_console whose transaction stays a reader: for a post whose long work (a sandbox query, a call to
    Stripe, a product build) must not hold the writer lock; it writes in short transactions of its own."""
    yield from _console(request, write=False)


def _console(request: Request, *, write: bool) -> Generator[Console, None, None]:
    with get_database(request).transaction(write=write) as session:
        principal = signin.principal_for(session, request.cookies.get(SESSION_COOKIE))
        locale = i18n.negotiate(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE))
        csrf = request.cookies.get(CSRF_COOKIE) or ""
        console = Console(request, session, principal, locale, csrf)
        if len(csrf) < 32:
            console.csrf_token = secrets.token_urlsafe(32)
            console.new_cookies[CSRF_COOKIE] = console.csrf_token
        yield console


ConsoleDep = Annotated[Console, Depends(get_console, scope="function")]
"""Scope "function": the transaction commits before the response leaves, so the page a redirect leads to
(or any reply) already sees the change. FastAPI's default scope would commit after the response is sent."""
ReadConsoleDep = Annotated[Console, Depends(get_read_console, scope="function")]


async def check_csrf(request: Request) -> None:
    """Every unsafe console request carries the CSRF cookie's value in a form field or the X-CSRF-Token header.

    The cookie is SameSite=Strict and another site cannot read it, so it cannot forge the field.

    A form's body is read here even when the header carries the token: this router dependency is solved before
    the console's, whose writer session takes the SQLite writer lock at its first statement; an async route
    that read its form after that held the machine-wide lock while the client sent the body, as slowly as it
    liked (red team red15).
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    # Starlette decides what is a form (any case of the type, any parameters); another body is not read.
    form = await request.form()
    value = form.get(CSRF_FIELD)
    sent = sent or (value if isinstance(value, str) else "")
    if len(cookie) < 32 or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Forbidden("csrf_failed")


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None = None) -> None:
    """Cookies are HttpOnly and SameSite; Secure when the page came over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict" if name == CSRF_COOKIE else "lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def _finish(console: Console, response: Response) -> Response:
    for name, value in console.new_cookies.items():
        set_cookie(response, console.request, name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    )
    return response


def page(
    console: Console,
    template: str,
    *,
    title: str,
    crumbs: tuple[tuple[str, str | None], ...] = (),
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render `template` in the console's layout; `crumbs` are (English label, path or None) pairs."""
    translations = i18n.translations(console.locale)
    env = ENV.overlay()
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    role = console.principal.role if console.principal else None
    html = env.get_template(template).render(
        c=console,
        term=lambda context, value: i18n.term(console.locale, context, str(value)),
        title=title,
        crumbs=crumbs,
        nav=navigation(role),
        path=console.request.url.path,
        lang="zh-CN" if console.locale == "zh_CN" else "en",
        csrf_field=CSRF_FIELD,
        vendor=VENDORED,
        subtitle=context.pop("subtitle", ""),
        **context,
    )
    return _finish(console, HTMLResponse(html, status_code=status_code))


def redirect(console: Console, to: str) -> Response:
    """A See Other to `to` (a same-site path only)."""
    if not to.startswith("/") or to.startswith("//"):
        to = "/"
    return _finish(console, RedirectResponse(to, status_code=303))


def login_redirect(request: Request) -> RedirectResponse:
    """Send a signed-out visitor to the sign-in page, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def error_page(console: Console, error: MarketError) -> Response:
    """A MarketError as a readable page, with the shared error shape's code and message."""
    return page(
        console,
        "error.html",
        title="Something needs your attention",
        status_code=error.status_code,
        error_code=error.code,
        error_message=console.message(error),
    )


def form_errors(console: Console, error: MarketError, fields: Mapping[str, str]) -> dict[str, str]:
    """Place an error next to the form field it concerns (by its code), or at the form's top ('')."""
    return {fields.get(error.code, ""): console.message(error)}
