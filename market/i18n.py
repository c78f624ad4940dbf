"""Stand-in for the i18n branch's language layer (same names); the lead keeps that branch's module at merge.

Only English text exists here: `translations` returns null translations, so every string shows its msgid.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"


def negotiate(accept_language: str | None, preferred: str | None = None) -> str:
    """The user's choice if it is a known locale, else the best match of Accept-Language, else zh_CN."""
    if preferred in LOCALES:
        return preferred
    wanted = []
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        if tag:
            wanted.append((weight, tag.replace("-", "_")))
    for _, tag in sorted(wanted, key=lambda item: -item[0]):
        language = tag.split("_", 1)[0].lower()
        for locale in LOCALES:
            if locale.split("_", 1)[0].lower() == language:
                return locale
    return DEFAULT_LOCALE


def translations(locale: str) -> Translations:
    """The gettext catalogue of `locale` (this stand-in has none: English msgids are shown)."""
    null: Any = NullTranslations()
    translated: Translations = null
    return translated


def gettext(locale: str, msgid: str, **params: Any) -> str:
    """`msgid` translated into `locale`, with `params` filled in."""
    text = translations(locale).gettext(msgid)
    return text % params if params else text


def format_money(amount_minor: int, currency: str, locale: str) -> str:
    """Minor units as money for the locale, e.g. ¥1,234.56."""
    return format_currency(Decimal(amount_minor) / 100, currency, locale=locale)


def format_date(value: date, locale: str) -> str:
    """A date in the locale's long form, e.g. 2026年12月1日."""
    return babel_format_date(value, format="long", locale=locale)


def format_datetime(value: datetime, locale: str) -> str:
    """A date and time in the locale's medium form."""
    return babel_format_datetime(value, format="medium", locale=locale)


def format_number(value: int | float | Decimal, locale: str) -> str:
    """A number with the locale's grouping and decimal marks."""
    return format_decimal(value, locale=locale)
