"""Red team red16m (session 12): a refusal written in a group commit batch must take its lock with the batch's.

A PostgreSQL batch takes every member's row locks first, in one global order (metering.group_commit.lock_order),
so that two API processes' batches can wait for each other but never deadlock. That holds only if every write
handed to the committer names the rows it locks. A refusal decided by transaction 1 (agreement revoked or
expired, quota used up, the organisation over its limit: metering.service `_Refused`) was handed over with no
locks at all, and took its buyer's chain head in the middle of the batch, after the batch held other rows: out
of the global order. Two processes' batches then deadlock, and PostgreSQL kills one after `deadlock_timeout`
(1 s): every member of both batches waits that long, and one batch, or the refusal, is written again alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from market.accounts.models import Role
from metering import chain, group_commit
from tests.conftest import ON_POSTGRES, Market, running_market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of


@pytest.fixture
def market(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data", metering_group_commit=True) as running:
        yield running


class _Captured:
    """Stands in for metering.group_commit.write: each write the query path hands over becomes a member that the
    test puts into batches of its own making; the request waits until its member was written."""

    def __init__(self) -> None:
        self.members: list[group_commit._Member[Any]] = []
        self.arrived = threading.Condition()

    def write(self, database: Any, settings: Any, work: Any, locks: Any = (), *, lean: bool = False) -> Any:
        member: group_commit._Member[Any] = group_commit._Member(work, locks, lean)
        with self.arrived:
            self.members.append(member)
            self.arrived.notify_all()
        assert member.event.wait(120), "the test never wrote this member"
        if member.error is not None:
            raise member.error
        return member.value

    def take(self, count: int) -> list[group_commit._Member[Any]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.members) >= count, 120), self.members
            taken, self.members = self.members[:count], self.members[count:]
            return taken


def _finish(batch: list[group_commit._Member[Any]]) -> None:
    for member in batch:
        member.done = True
        member.event.set()


def _someone_waits_for_a_lock(market: Market) -> bool:
    if not ON_POSTGRES:
        time.sleep(0.3)  # SQLite: the second batch queues for the writer lock; nothing to look at
        return True
    with market.database.engine.connect() as connection:
        waiting = connection.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()
    return bool(waiting)


def _until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def test_a_refusal_in_a_batch_takes_its_chain_lock_in_the_global_order(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process 1's batch: a query of buyer `high` (its rows locked up front), then a refusal of buyer `low`
    (revoked agreement). Process 2's batch locks both buyers' chain heads, `low` first (the global order), and
    waits for `high`'s, which process 1 holds. Process 1's refusal then locks `low`'s head: before the fix it
    had not been taken up front, process 2 held it, and the two batches deadlocked (PostgreSQL's victim after
    1 s: a failed batch or a refusal written again alone). Now process 1 took it with its batch's locks, and
    process 2 simply waits for process 1's COMMIT."""
    listed = listed_product(market)
    low, high = sorted((market.actor(Role.BUYER) for _ in range(2)), key=lambda a: a.principal.org_id)
    grant(market, listed, low, purpose="commercial", plan="standard")
    grant(market, listed, high, purpose="commercial", plan="standard")
    revoked = market.client.post(
        f"/v1/agreements/{agreement_of(market, low)['id']}/revoke",
        headers=listed.operator.headers,
        json={"reason": "breach"},
    )
    assert revoked.status_code == 200, revoked.text
    captured = _Captured()
    monkeypatch.setattr(group_commit, "write", captured.write)
    with ThreadPoolExecutor(max_workers=2) as requests:
        answered = requests.submit(query, market, high, listed.slug, BY_REGION)
        (query_write,) = captured.take(1)
        refused = requests.submit(query, market, low, listed.slug, BY_REGION)
        (refusal_write,) = captured.take(1)
        assert query_write.lean and not refusal_write.lean

        process_1_holds, process_2_waits = threading.Event(), threading.Event()
        original = query_write.work

        def then_hold(session: Session) -> Any:
            value = original(session)  # the batch's locks were taken before its first member ran
            process_1_holds.set()
            assert process_2_waits.wait(60), "process 2 never waited for a lock"
            return value

        query_write.work = then_hold
        first = group_commit.GroupCommit(market.database)
        second = group_commit.GroupCommit(market.database)
        heads = [chain.head_upsert(low.principal.org_id), chain.head_upsert(high.principal.org_id)]
        other_batch = [group_commit._Member(lambda session: "b1", heads), group_commit._Member(lambda session: "b2")]
        batch = [query_write, refusal_write]
        with ThreadPoolExecutor(max_workers=2) as processes:
            one = processes.submit(first._write, batch)
            assert process_1_holds.wait(60), "process 1's batch never ran its first member"
            two = processes.submit(second._write, other_batch)
            _until(lambda: _someone_waits_for_a_lock(market), "process 2 waits for a row lock")
            process_2_waits.set()
            one.result(timeout=60)
            two.result(timeout=60)
        _finish(batch)
        assert answered.result(timeout=60).status_code == 200
        refusal = refused.result(timeout=60)
    assert refusal.status_code == 403, refusal.text
    assert refusal.json()["error"]["code"] == "agreement_revoked"
    assert (first.stats.failed_batches, second.stats.failed_batches) == (0, 0), "a batch was a deadlock's victim"
    assert (first.stats.alone_after_batch, second.stats.alone_after_batch) == (0, 0), "the refusal was a victim"
    assert [m.value for m in other_batch] == ["b1", "b2"]
