"""The language layer: which locale a caller gets, its gettext catalogue, and locale-aware formatting.

Two locales, zh_CN (the default, as the platform's users are Chinese) and en. The catalogues are
`market/locale/<locale>/LC_MESSAGES/messages.po`, read from the .po at run time (compiled in memory
once per process, so there is no build step and no binary file to keep in step). `make messages`
extracts every msgid (the EN dict of market/messages.py, gettext calls in Python and Jinja2
templates; see babel.cfg) and updates both catalogues.

Which locale a request gets (`negotiate`): the user's own choice first (the `market_lang` cookie,
or a preference the console stored), then `Accept-Language`, else zh_CN. `LocaleMiddleware` puts the
negotiated locale in a context variable (`current_locale()`) and in `request.state.locale`, so error
messages raised deep in a service follow the caller's language.
"""

from __future__ import annotations

import contextvars
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.types import ASGIApp, Receive, Scope, Send

LOCALES: tuple[str, ...] = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LOCALE_COOKIE = "market_lang"
"""The cookie carrying a user's explicit language choice (the console's language switch sets it)."""
DISPLAY_TIMEZONE = "Asia/Shanghai"
"""Times are stored in UTC and shown in Beijing time."""

_HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_current: contextvars.ContextVar[str] = contextvars.ContextVar("market_locale", default="en")


def normalize(tag: str | None) -> str | None:
    """The supported locale a language tag asks for ('zh-CN', 'zh_Hans', 'zh' -> zh_CN; 'en-GB' -> en), or None."""
    if not tag:
        return None
    tag = tag.strip()
    if not _TAG.match(tag):
        return None
    language = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    if language == "zh":
        return "zh_CN"
    if language == "en":
        return "en"
    return None


def _accepted(header: str) -> list[str]:
    """The language tags of an Accept-Language header, best first (stable among equal weights)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and tag.strip():
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(accept_language: str | None, preferred: str | None = None) -> str:
    """The locale to answer in: `preferred` (the user's choice) if supported, then Accept-Language, else zh_CN."""
    chosen = normalize(preferred)
    if chosen is not None:
        return chosen
    for tag in _accepted(accept_language or ""):
        if tag == "*":
            return DEFAULT_LOCALE
        locale = normalize(tag)
        if locale is not None:
            return locale
    return DEFAULT_LOCALE


def html_lang(locale: str) -> str:
    """The BCP 47 tag for `<html lang>` and `Content-Language` ('zh-CN', 'en')."""
    return _HTML_LANG.get(locale, "en")


def catalogue_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def translations(locale: str) -> Translations:
    """The gettext catalogue of `locale` (read from its .po once per process); unknown locales get English."""
    return _load(locale if locale in LOCALES else "en")


@lru_cache(maxsize=len(LOCALES))
def _load(locale: str) -> Translations:
    with catalogue_path(locale).open("rb") as handle:
        catalogue = read_po(handle, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def N_(msgid: str) -> str:
    """Marks a msgid for extraction (`make messages`) where it is defined; it is translated where it is shown."""
    return msgid


def NP_(context: str, msgid: str) -> str:
    """Like `N_`, for a word whose meaning depends on what it names (msgctxt): the `finance` role (财务)
    is not the `finance` zone (金融). Shown with `term(locale, context, msgid)`."""
    return msgid


def term(locale: str, context: str, msgid: str) -> str:
    """A data word (a role, a state, a zone, ...) translated in its context, else without one.

    The fallback keeps words that are marked without a context (`N_`) translated."""
    catalogue = translations(locale)
    found = str(catalogue.pgettext(context, msgid))
    return found if found != msgid else str(catalogue.gettext(msgid))


class Msg(str):
    """A message parameter that is itself English text to translate, e.g. `hint=Msg("Wait for the review
    decision.")`: `messages.render` translates it into the message's locale. `make messages` extracts it."""

    __slots__ = ()


class Phrase:
    """A message parameter that is itself a message with parameters of its own, e.g.
    `detail=Phrase("{message} (line {line}, column {column})", message=..., line=3, column=7)`: `messages.render`
    translates its msgid into the message's locale and fills it. `make messages` extracts it. `str()` of one is
    its English text, for logs."""

    __slots__ = ("msgid", "params")

    def __init__(self, msgid: str, /, **params: Any) -> None:
        self.msgid = msgid
        self.params = params

    def __str__(self) -> str:
        return fill(self.msgid, self.params)

    def __repr__(self) -> str:
        return f"Phrase({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Phrase) and (self.msgid, self.params) == (other.msgid, other.params)

    def __hash__(self) -> int:
        return hash((self.msgid, str(self)))


def translated(locale: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with every `Msg` and `Phrase` value translated into `locale`."""
    return {
        name: gettext(locale, value)
        if isinstance(value, Msg)
        else gettext(locale, value.msgid, **value.params)
        if isinstance(value, Phrase)
        else value
        for name, value in params.items()
    }


def fill(template: str, params: dict[str, Any]) -> str:
    """`template` with its {name} placeholders filled; a template that does not fit its params is left as is."""
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template


def gettext(locale: str, msgid: str, /, **params: Any) -> str:
    """`msgid` translated into `locale`, then its {name} placeholders filled from `params`."""
    return fill(translations(locale).gettext(msgid), params)


def pgettext(locale: str, context: str, msgid: str, /, **params: Any) -> str:
    """Like `gettext`, for a msgid with a context (market/messages.py uses the error code as context)."""
    return fill(str(translations(locale).pgettext(context, msgid)), params)


def ngettext(locale: str, singular: str, plural: str, n: int, /, **params: Any) -> str:
    """The singular or plural form of a message for `n`, translated, with {n} and `params` filled."""
    return fill(str(translations(locale).ngettext(singular, plural, n)), {"n": n, **params})


def format_money(amount_minor: int, currency: str, locale: str) -> str:
    """An amount of minor units as money for `locale`: 123456 CNY -> '¥1,234.56' (zh_CN), 'CN¥1,234.56' (en)."""
    from market.money import MINOR_UNITS

    major = Decimal(amount_minor).scaleb(-MINOR_UNITS.get(currency, 2))
    return babel_numbers.format_currency(major, currency, locale=locale)


def format_number(number: int | float | Decimal, locale: str) -> str:
    """A number with the locale's grouping and decimal signs: 1234567 -> '1,234,567'."""
    return babel_numbers.format_decimal(number, locale=locale)


def format_exact(number: Decimal | float | int, locale: str) -> str:
    """A number with every significant digit it has and no exponent: 0.3 -> '0.3', 1e-07 -> '0.0000001'.

    For figures such as epsilon and delta that are exact decimals (a float goes through its shortest repr)."""
    exact = number if isinstance(number, Decimal) else Decimal(str(number))
    return babel_numbers.format_decimal(exact, locale=locale, decimal_quantization=False)


def format_date(value: date | datetime, locale: str) -> str:
    """A date in the locale's long form: '2026年12月1日' (zh_CN), 'December 1, 2026' (en)."""
    if isinstance(value, datetime):
        value = _local(value).date()
    return babel_dates.format_date(value, format="long", locale=locale)


def format_datetime(value: datetime, locale: str) -> str:
    """A moment (naive values are UTC) in Beijing time: '2026年12月1日 08:30' (zh_CN), 'Dec 1, 2026, 8:30 AM' (en)."""
    local = _local(value)
    if locale == "zh_CN":
        return f"{babel_dates.format_date(local, format='long', locale=locale)} {local:%H:%M}"
    return babel_dates.format_datetime(local, format="medium", locale=locale).replace("\u202f", " ")


def _local(value: datetime) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(DISPLAY_TIMEZONE))


def current_locale() -> str:
    """The locale of the request being served (set by LocaleMiddleware); 'en' outside a request (CLI, jobs)."""
    return _current.get()


@contextmanager
def use_locale(locale: str) -> Iterator[str]:
    """Run a block in `locale` (e.g. once the console knows a signed-in user's saved preference)."""
    token = _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    for part in (_header(scope, b"cookie") or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"')
    return None


def scope_locale(scope: Scope) -> str:
    """The locale negotiated for an HTTP request: the locale cookie, then Accept-Language, else zh_CN."""
    return negotiate(_header(scope, b"accept-language"), _cookie(scope, LOCALE_COOKIE))


class LocaleMiddleware:
    """Negotiates each request's locale once; `current_locale()` and `request.state.locale` carry it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        locale = scope_locale(scope)
        scope.setdefault("state", {})["locale"] = locale
        with use_locale(locale):
            await self.app(scope, receive, send)
