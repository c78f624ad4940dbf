"""Red team red14 (session 10): the refresh-ahead thread racing a revocation (market/access_cache.py).

A lookup near the end of an entry's life has it read again in a background thread. Here that thread is held
just after it has read the key (or the agreement) as still valid, the revocation is committed and answered
over HTTP meanwhile, and then the thread is let go to store what it read. It must not be stored: it was read
before a change committed since (the access generation moved), and "revoke, then query" must be refused by
every process. Held (the entry is remembered only under the generation read before the database was); the
test fails with that check removed from `remember_principal` / `remember_prepared`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from market import access_cache, deps
from market.accounts.models import Role
from metering import service as metering_service
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of


def _held_in_refresh(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """owner.name, when a background refresh calls it, returns its value only once `go` is set; `inside` is
    set once such a call has read the database."""
    original: Callable[..., Any] = getattr(owner, name)
    inside, go = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        if threading.current_thread().name.startswith("access-refresh") and not go.is_set():
            inside.set()
            assert go.wait(30)
        return value

    monkeypatch.setattr(owner, name, held)
    return inside, go


def _refreshes_done() -> None:
    deadline = time.monotonic() + 30
    while any(t.name.startswith("access-refresh") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a refresh never ended"
        time.sleep(0.01)


@pytest.mark.parametrize("revoked", ["key", "agreement"])
def test_a_refresh_that_read_before_a_revocation_does_not_bring_it_back(
    market: Market, monkeypatch: pytest.MonkeyPatch, revoked: str
) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    colleague = market.actor(Role.BUYER, org=buyer.principal.org_name)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200  # the key's and agreement's entries
    if revoked == "key":
        inside, go = _held_in_refresh(monkeypatch, deps, "authenticate")
    else:
        inside, go = _held_in_refresh(monkeypatch, metering_service, "_runs_of")
    monkeypatch.setattr(access_cache, "REFRESH_AHEAD_SECONDS", access_cache.TTL_SECONDS * 10)  # refresh at once
    try:
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200  # served; a refresh starts
        assert inside.wait(30), "no refresh read the database"
        if revoked == "key":
            key_id = market.client.get("/v1/keys", headers=colleague.headers).json()["items"][0]["id"]
            done = market.client.delete(f"/v1/keys/{key_id}", headers=colleague.headers)
        else:
            done = market.client.post(
                f"/v1/agreements/{agreement_of(market, buyer)['id']}/revoke",
                headers=listed.operator.headers,
                json={"reason": "breach"},
            )
        assert done.status_code == 200, done.text
    finally:
        go.set()
    _refreshes_done()
    for _ in range(3):
        answer = query(market, buyer, listed.slug, BY_REGION)
        assert answer.status_code == (401 if revoked == "key" else 403), answer.text
        _refreshes_done()
