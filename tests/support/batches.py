"""Group commit batches made certain (metering.group_commit), for HTTP tests of metered queries whose
bookkeeping writes share one transaction.

A test holds what transaction 3 needs first (`writer_held`: SQLite's machine-wide writer flock, PostgreSQL's
month counters in SHARE mode), sends its queries, waits until their writes queue in the committer, and lets
the writer go: the queued writes are written as ONE batch, for certain, not by luck (`batched` does all of
it). Then it reads the usage records back and checks that their hash chains verify.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, text

from market.locks import lock, release
from metering import chain, group_commit
from metering.models import UsageRecord
from tests.conftest import Market
from tests.support.markets import market_fixture
from tests.support.waiting import until

T = TypeVar("T")


def batch_market_fixture(concurrent: int, **settings: Any) -> Any:
    """A `market` fixture with group commit forced on (its default is on for SQLite only) and room in the
    sandbox's admission for `concurrent` queries at once, twice over. In a test module:
    `market = batch_market_fixture(24)`."""
    return market_fixture(
        metering_group_commit=True,
        sandbox_org_concurrency=concurrent * 2,
        sandbox_queue_size=concurrent * 2,
        sandbox_queue_timeout_seconds=300,
        **settings,
    )


def writer_lock_path(market: Market) -> Path:
    """SQLite: the machine-wide writer lock's file (market.db's `<file>.writer-lock`)."""
    return Path(f"{market.settings.effective_database_url.split('///', 1)[1]}.writer-lock")


@contextlib.contextmanager
def month_counters_held(market: Market) -> Iterator[None]:
    """PostgreSQL: a SHARE lock on the month counters, held from this process, so that transaction 3's writes
    queue behind it."""
    with market.database.engine.connect() as blocker:
        blocker.execute(text("BEGIN"))
        blocker.execute(text("LOCK TABLE agreement_months IN SHARE MODE"))
        try:
            yield
        finally:
            blocker.execute(text("ROLLBACK"))


@contextlib.contextmanager
def writer_held(market: Market) -> Iterator[None]:
    """What transaction 3 needs first, held from this process (SQLite: the writer flock; PostgreSQL: the month
    counters), so that concurrent writes queue behind it, in this process's committer or another's."""
    if market.database.is_sqlite:
        fd = lock(writer_lock_path(market))
        try:
            yield
        finally:
            release(fd)
    else:
        with month_counters_held(market):
            yield


def batched(market: Market, calls: int, send: Callable[[int], T]) -> list[T]:
    """`send(i)` for i < `calls`, from as many threads, written as one batch: sent while the writer is held,
    which is let go once all but the leader's write wait in the committer's queue (the leader's own batch of
    one waits for the writer). Call 0 is sent first and leads, so the others are certainly in the batch
    (red15: a test's failing member that happened to lead was run alone, not in the batch). The answers, in
    the order of `i`."""
    committer = group_commit.committer(market.database)
    with ThreadPoolExecutor(max_workers=calls) as pool:
        with writer_held(market):
            futures = [pool.submit(send, 0)]
            until(lambda: committer._leading, "the first call leads")
            futures += [pool.submit(send, i) for i in range(1, calls)]
            until(lambda: len(committer._pending) >= calls - 1, f"{calls - 1} writes queue")
        responses = [future.result(timeout=120) for future in futures]
    assert committer.stats.largest >= calls - 1, committer.stats
    return responses


def usage_records(market: Market) -> list[UsageRecord]:
    """Every usage record, in chain order, detached from its session."""
    with market.database.transaction() as session:
        found = list(session.scalars(select(UsageRecord).order_by(UsageRecord.chain_seq)))
        session.expunge_all()
        return found


def chains_verify(market: Market, records: int) -> None:
    """The usage hash chains verify, and hold `records` records in all."""
    with market.database.transaction() as session:
        report = chain.verify(session)
    assert report.ok and report.records == records, report.breaks
