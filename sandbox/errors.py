"""Sandbox failures. Each maps to a 4xx for the buyer: the query is refused or failed, never the API."""

from __future__ import annotations

from typing import Any

from market.errors import MarketError


class QueryRefused(MarketError):
    """The policy refuses the query. The code names the construct; the message what to do instead."""

    status_code = 422

    def __init__(self, code: str, /, **params: Any) -> None:
        super().__init__(code, **params)


class QueryFailed(MarketError):
    """The query was allowed but could not finish: a run-time error, a timeout or a resource limit."""

    status_code = 422
