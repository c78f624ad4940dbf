"""Red team red15 (session 11): an agreement revoked while its queries wait for, or run in, a group commit batch.

metering.service's transaction 3 (`_record`) reads the agreement again when an access-relevant row changed on
this machine since transaction 1 (`recheck`), so that no query whose bookkeeping runs after a revocation was
answered is answered with rows. Two holes, both on PostgreSQL (where a revocation commits while a batch runs):

- whether to read it again was decided BEFORE the write was queued for the batch: a revocation answered while
  the write waited for the batch (the previous batch, the row locks) was never seen;
- members of one batch share one session: the second member's `session.get(Agreement, ...)` returned the object
  the first member had loaded (the identity map), not the row as committed now.

Both fixed (metering.service `_record` decides `recheck` itself; metering.group_commit `_write` expires the
session before each member). On SQLite a revocation is a write: it cannot commit while a batch holds the writer
lock, so the first two tests are PostgreSQL's; the third holds the batch's leader before its transaction begins,
and shows the first hole on both databases.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from market.accounts.models import Role
from metering import group_commit
from metering import service as metering_service
from tests.conftest import ON_POSTGRES, Actor, Market
from tests.factories import Listed, grant, listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of
from tests.support.batches import batch_market_fixture, month_counters_held
from tests.support.waiting import until

CALLS = 6


market = batch_market_fixture(CALLS)


def _warm_commercial_buyer(market: Market) -> tuple[Listed, Actor, dict[str, Any]]:
    """A listed product, a buyer with a commercial agreement on it (returned too), and a query answered: the
    result cache is warm."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    return listed, buyer, agreement_of(market, buyer)


def _revoke(market: Market, revoker: Any, agreement_id: str) -> None:
    revoked = market.client.post(
        f"/v1/agreements/{agreement_id}/revoke", headers=revoker.headers, json={"reason": "breach"}
    )
    assert revoked.status_code == 200, revoked.text


@pytest.mark.skipif(not ON_POSTGRES, reason="on SQLite a revocation cannot commit while the batch's writes wait")
def test_a_revocation_answered_while_writes_wait_for_the_batch_refuses_them_all(market: Market) -> None:
    """Queries have run and their writes wait in the committer's queue (the month counters are held) when the
    agreement is revoked and the revocation answered. Every one of them is answered after that: each must be
    refused (`agreement_revoked`), none answered with rows. Before: all answered 200, with rows, and charged."""
    listed, buyer, agreement = _warm_commercial_buyer(market)
    committer = group_commit.committer(market.database)
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        with month_counters_held(market):
            futures = [pool.submit(query, market, buyer, listed.slug, BY_REGION, f"queued-{i}") for i in range(CALLS)]
            until(lambda: len(committer._pending) >= CALLS - 1, "the writes queue for the batch")
            _revoke(market, listed.operator, agreement["id"])
        answers = [future.result(timeout=120) for future in futures]
    assert [a.status_code for a in answers] == [403] * CALLS, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers} == {"agreement_revoked"}
    assert all("rows" not in a.json() for a in answers)


@pytest.mark.skipif(not ON_POSTGRES, reason="on SQLite a revocation cannot commit while a batch holds the writer")
def test_a_revocation_between_two_members_of_one_batch_refuses_the_later_member(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes of several queries are written as one batch after an access change (another buyer's agreement
    revoked) made them read their agreement again. The first member reads it (active), then the agreement is
    revoked, and answered, before the next member runs: every member that runs after the revocation must
    see it revoked. Before: they read the object the first member had loaded into the batch's shared session
    and were answered 200, with rows, after the revocation was answered."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    other = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    grant(market, listed, other, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200  # warm: the result cache
    agreement = agreement_of(market, buyer)
    others = agreement_of(market, other)
    original = metering_service._record
    order: list[tuple[str, bool]] = []  # (key, whether the revocation was answered before its work began)
    revoked = threading.Event()

    def recording(session: Any, attempt: Any, *args: Any, **kwargs: Any) -> Any:
        in_batch = group_commit._DEFERRED in session.info
        order.append((attempt.key, revoked.is_set()))
        outcome = original(session, attempt, *args, **kwargs)
        if in_batch and not revoked.is_set():  # the batch's first member: revoke before the next one runs
            _revoke(market, listed.operator, agreement["id"])
            revoked.set()
        return outcome

    monkeypatch.setattr(metering_service, "_record", recording)
    committer = group_commit.committer(market.database)
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        with month_counters_held(market):
            futures = {
                f"batched-{i}": pool.submit(query, market, buyer, listed.slug, BY_REGION, f"batched-{i}")
                for i in range(CALLS)
            }
            until(lambda: len(committer._pending) >= CALLS - 1, "the writes queue for the batch")
            _revoke(market, listed.operator, others["id"])  # an access change: the queued writes read again
        answers = {key: future.result(timeout=120) for key, future in futures.items()}
    assert revoked.is_set(), order
    after = [key for key, late in order if late]
    assert after, order  # the batch had members after the revocation
    for key in after:
        assert answers[key].status_code == 403, answers[key].text
        assert answers[key].json()["error"]["code"] == "agreement_revoked"
    assert committer.stats.largest >= CALLS - 1, committer.stats


def test_a_revocation_committed_while_writes_wait_in_the_committers_queue_refuses_them_on_both_databases(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same hole on both databases: the batch's leader is held just before it begins its transaction (before
    SQLite's writer lock), the other writes wait in the committer's queue, and the revocation commits and is
    answered meanwhile. Every query is answered after it: all refused. Before: all 200, with rows."""
    listed, buyer, agreement = _warm_commercial_buyer(market)
    committer = group_commit.committer(market.database)
    gate = threading.Event()
    original = group_commit.begin_write

    def held_begin_write(session: Any) -> None:
        assert gate.wait(120), "the gate was never opened"
        original(session)

    monkeypatch.setattr(group_commit, "begin_write", held_begin_write)
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        try:
            futures = [pool.submit(query, market, buyer, listed.slug, BY_REGION, f"gated-{i}") for i in range(CALLS)]
            until(lambda: len(committer._pending) >= CALLS - 1, "the writes queue behind the held leader")
            _revoke(market, listed.operator, agreement["id"])
        finally:
            gate.set()
        answers = [future.result(timeout=120) for future in futures]
    assert [a.status_code for a in answers] == [403] * CALLS, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers} == {"agreement_revoked"}
