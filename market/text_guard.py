"""Refuse text no database can store before any route sees it: NUL characters and lone surrogates.

PostgreSQL's text type cannot hold U+0000, and no UTF-8 encoder can write an unpaired UTF-16 surrogate
(a JSON string may spell one as "\\ud800"). Both arrive through ordinary input (a path segment, a query
parameter, a header, a JSON or form field) and would otherwise fail deep inside a repository as a 500.
One app-wide dependency checks every place a route reads text from, so each context's schemas stay
free of the concern.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from fastapi.params import Form
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

from market import phases
from market.errors import Unprocessable

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def first_bad_string(body: Any) -> str | None:
    """Where the first unstorable string (or key) sits inside a parsed JSON body; None if nowhere.

    Iterative, so a deeply nested body cannot exhaust the interpreter's stack."""
    pending: list[tuple[Any, str]] = [(body, "body")]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                if UNSTORABLE.search(str(key)):
                    return where
                pending.append((item, f"{where}.{key}"))
        elif isinstance(value, list):
            pending.extend((item, f"{where}.{index}") for index, item in enumerate(value))
    return None


def _refuse(where: str) -> Unprocessable:
    return Unprocessable("unstorable_text", where=where)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


async def reject_unstorable_text(request: Request) -> None:
    """422 `unstorable_text` naming the first path, query, header or body field holding such text."""
    phases.on_thread("reject_unstorable_text")
    for name, value in request.path_params.items():
        if isinstance(value, str) and UNSTORABLE.search(value):
            raise _refuse(f"path.{name}")
    for name, value in request.query_params.multi_items():
        if UNSTORABLE.search(name) or UNSTORABLE.search(value):
            raise _refuse(f"query.{name}")
    for name, value in request.headers.items():
        if "\x00" in value:
            raise _refuse(f"header.{name}")
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        # Routes that stream their body (uploads) read bytes, not text: nothing to check here.
        return
    # FastAPI has already read and parsed the body of this route; both calls below return its cache.
    if isinstance(route.body_field.field_info, Form):
        form = await request.form()
        for name, item in form.multi_items():
            text = item.filename or "" if isinstance(item, UploadFile) else item
            if UNSTORABLE.search(name) or UNSTORABLE.search(text):
                raise _refuse(f"body.{name}")
        return
    if not _is_json(request.headers.get("content-type", "")) or not await request.body():
        return
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        return  # not JSON after all: the route's own validation refuses it
    where = first_bad_string(body)
    if where is not None:
        raise _refuse(where)
