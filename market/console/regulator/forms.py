"""Reading the regulator's and source departments' forms: amounts typed in currency units, dates, lists.

Each reader raises a MarketError whose code the page places next to its field (`FIELD_OF_ERROR` of the
route module), so a mistake reads in the page's language.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import ValidationError

from market.console.filters import day
from market.errors import Unprocessable

AMOUNT = re.compile(r"\d{1,18}(\.\d+)?")
"""Digits, optionally a point and decimals: no sign, exponent, NaN or infinity."""
MINOR_PER_UNIT = 100
"""Fen per yuan (and cents per dollar): forms take amounts in currency units, the services minor units."""


def minor_units(text: str, field: str, *, places: int = 2) -> Decimal:
    """An amount typed in currency units ("12.50") as minor units; empty is zero. At most `places` decimals."""
    cleaned = text.strip().replace(",", "")
    if not cleaned:
        return Decimal(0)
    if not AMOUNT.fullmatch(cleaned) or len(cleaned.partition(".")[2]) > places:
        raise Unprocessable("console_invalid_amount", field=field, value=text[:40])
    return Decimal(cleaned) * MINOR_PER_UNIT


def whole_minor_units(text: str, field: str) -> int:
    """An amount in currency units with at most two decimals, as whole minor units."""
    return int(minor_units(text, field))


def day_start(text: str, field: str) -> datetime | None:
    """A YYYY-MM-DD date as the start of that UTC day; empty gives None."""
    found = day(text, field)
    return datetime(found.year, found.month, found.day, tzinfo=UTC) if found else None


def words(text: str) -> list[str]:
    """A comma- or space-separated list, without blanks or repeats, in the order given."""
    return list(dict.fromkeys(w for w in re.split(r"[,\s，、]+", text.strip()) if w))


def validation_detail(error: ValidationError) -> str:
    """The first problem of a pydantic error, as `where: what` (English; the codes above cover the usual cases)."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
