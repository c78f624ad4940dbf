"""The filters of the console's list pages, read one way: the text as typed (kept in the form and in the next
page's link), each field cut to its length, dates as YYYY-MM-DD, and a message per field that cannot be read,
shown next to that field in the page's language."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlencode

from market.console.web import Console
from market.errors import BadRequest, MarketError, Unprocessable

T = TypeVar("T")


def day(text: str, name: str) -> date | None:
    """A YYYY-MM-DD date; empty gives None, anything else `console_invalid_date` naming the field."""
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError as error:
        raise Unprocessable("console_invalid_date", field=name, value=text[:40]) from error


def day_range(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """From the start of `since` to the end of `until` (both days included) as UTC instants, in order."""
    if since and until and until < since:
        raise BadRequest("invalid_date_range", since=since.isoformat(), until=until.isoformat())
    return (
        datetime.combine(since, datetime.min.time(), UTC) if since else None,
        datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC) if until else None,
    )


@dataclass
class ListFilters:
    """A list page's filters, as typed, and the message of each one that could not be read."""

    console: Console
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, console: Console, lengths: dict[str, int]) -> ListFilters:
        """The query string's `lengths` fields (`from` included, which is no Python name), each cut to its length."""
        params = console.request.query_params
        return cls(console, {name: params.get(name, "")[:length] for name, length in lengths.items()})

    def parse(self, name: str, parse: Callable[[str], T]) -> T | None:
        """The field read by `parse`, None when empty; a refusal is kept as the field's message (None too).

        Only a 4xx about the input is kept: a refusal of the caller (401, 403) still ends the page."""
        text = self.values.get(name, "")
        if not text.strip():
            return None
        try:
            return parse(text)
        except MarketError as error:
            if error.status_code in (401, 403):
                raise
            self.errors[name] = self.console.message(error)
            return None

    def query(self) -> str:
        """The filters that are set, as a query string for the next page's link."""
        return urlencode({k: v for k, v in self.values.items() if v})
