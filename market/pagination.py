"""The one list convention of the API (docs/api.md): every list route answers `{items, next_cursor}`,
takes `?limit=` and `?cursor=`, and walks a stable order whose last key is a unique id.

A cursor is opaque to callers: the sort key of the last item returned, so a page never repeats or
skips an item when others are added before it. Routes over large tables page in SQL (`after_key`);
routes over small, bounded collections page in memory (`page_of`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, or_

from market.errors import BadRequest

T = TypeVar("T")
Key = tuple[str | int | datetime, ...]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).")
]
CursorQuery = Annotated[
    str | None,
    Query(max_length=1000, description="The `next_cursor` of the previous page; omit it for the first page."),
]


class Page(BaseModel, Generic[T]):
    """One page of a list: the items in the route's stable order, and where the next page starts."""

    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


def _plain(value: str | int | datetime) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return {"t": aware.isoformat()}
    return value


def encode_cursor(key: Key) -> str:
    """The opaque cursor for a sort key."""
    return base64.urlsafe_b64encode(json.dumps([_plain(v) for v in key]).encode()).decode()


def decode_cursor(cursor: str, arity: int | None) -> Key:
    """The sort key a cursor carries; a 400 for anything this API did not return."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        if not isinstance(raw, list) or not raw or (arity is not None and len(raw) != arity):
            raise ValueError("wrong arity")
        values: list[str | int | datetime] = []
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("t"), str):
                moment = datetime.fromisoformat(item["t"])
                if moment.tzinfo is None:
                    raise ValueError("naive timestamp")
                values.append(moment)
            elif isinstance(item, str | int) and not isinstance(item, bool):
                values.append(item)
            else:
                raise ValueError("bad value")
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BadRequest("invalid_cursor") from error
    return tuple(values)


def _comparable(value: str | int | datetime) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value


def page_of(
    items: Sequence[T], *, key: Callable[[T], Key], limit: int, cursor: str | None, descending: bool = False
) -> tuple[list[T], str | None]:
    """Sort a small collection by `key` (unique), and cut the page that follows `cursor`."""

    def sort_key(item: T) -> tuple[Any, ...]:
        return tuple(_comparable(v) for v in key(item))

    ordered = sorted(items, key=sort_key, reverse=descending)
    if cursor:
        sample = key(ordered[0]) if ordered else None
        after = tuple(_comparable(v) for v in decode_cursor(cursor, len(sample) if sample else None))
        if sample is not None and [type(v) for v in after] != [type(_comparable(v)) for v in sample]:
            raise BadRequest("invalid_cursor")
        try:
            ordered = [i for i in ordered if (sort_key(i) < after if descending else sort_key(i) > after)]
        except TypeError as error:
            raise BadRequest("invalid_cursor") from error
    page = ordered[:limit]
    next_cursor = encode_cursor(key(page[-1])) if len(ordered) > limit else None
    return page, next_cursor


def after_key(columns: Sequence[Any], key: Key, *, descending: bool) -> ColumnElement[bool]:
    """SQL condition: rows strictly after `key` in the order of `columns` (all ascending or all descending)."""
    if len(columns) != len(key):
        raise BadRequest("invalid_cursor")
    clauses = []
    for index, column in enumerate(columns):
        equal = [columns[i] == key[i] for i in range(index)]
        beyond = column < key[index] if descending else column > key[index]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def cut(rows: Sequence[T], limit: int, key: Callable[[T], Key]) -> tuple[list[T], str | None]:
    """Given up to limit + 1 rows in order, the page and the cursor of the next one."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit else None
