"""Refresh ahead of the query path's access caches (market.access_cache): a buyer who keeps querying never
waits for the database read of its key or its agreement, and a change no session of this machine saw
(raw SQL: another machine) is still refused within the TTL, refreshes or not."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from market import access_cache, deps
from market.accounts.models import Role
from market.clock import utcnow
from metering import service as metering_service
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION

TTL = 3.0
AHEAD = 2.5


@pytest.fixture
def short_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_cache, "TTL_SECONDS", TTL)
    monkeypatch.setattr(access_cache, "REFRESH_AHEAD_SECONDS", AHEAD)


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, counts: Counter[str], label: str) -> None:
    """Count the calls of owner.name, apart by whether a background refresh made them."""
    original: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        where = "refresh" if threading.current_thread().name.startswith("access-refresh") else "request"
        counts[f"{label} {where}"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


def test_a_steady_buyer_never_waits_for_the_database_read(
    market: Market, short_ttl: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queries for more than two TTLs after the first: every read of the key and of the agreement after
    the first is made by a background refresh, none on a request's path (before: one of each per TTL)."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200  # the caches' first entries
    counts: Counter[str] = Counter()
    _counting(monkeypatch, deps, "_authenticate", counts, "key")
    _counting(monkeypatch, deps, "authenticate", counts, "key")
    _counting(monkeypatch, metering_service, "_agreement_for_query", counts, "agreement")
    until = time.monotonic() + 2.5 * TTL
    answered = 0
    while time.monotonic() < until:
        response = query(market, buyer, listed.slug, BY_REGION)
        assert response.status_code == 200, response.text
        answered += 1
        time.sleep(0.05)
    assert counts["key request"] == 0 and counts["agreement request"] == 0, (counts, answered)
    assert counts["key refresh"] >= 2 and counts["agreement refresh"] >= 2, (counts, answered)


@pytest.mark.parametrize("change", ["key", "agreement"])
def test_a_change_made_elsewhere_is_refused_within_the_ttl(market: Market, short_ttl: None, change: str) -> None:
    """A key (or an agreement) revoked with raw SQL, which no listener of this machine sees: the buyer,
    querying all along (so its entries are refreshed ahead), is refused within the TTL (and a little for
    the read), and never answered 200 again."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for _ in range(3):
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
        time.sleep(0.3)
    with market.database.engine.begin() as connection:  # no ORM session: the generation does not move
        if change == "key":
            connection.execute(text("UPDATE api_keys SET revoked_at = :now"), {"now": utcnow()})
        else:
            connection.execute(text("UPDATE agreements SET status = 'revoked', revoked_reason = 'elsewhere'"))
    revoked_at = time.monotonic()
    statuses: list[tuple[float, int]] = []
    while time.monotonic() < revoked_at + TTL + 3.0:
        statuses.append((time.monotonic() - revoked_at, query(market, buyer, listed.slug, BY_REGION).status_code))
        time.sleep(0.05)
    refused = 401 if change == "key" else 403
    first = next(i for i, (_, status) in enumerate(statuses) if status == refused)
    assert statuses[first][0] < TTL + 1.0, statuses
    assert all(status == refused for _, status in statuses[first:]), statuses
    assert all(status == 200 for _, status in statuses[:first]), statuses
