"""Group commit (metering.group_commit): concurrent metered queries whose bookkeeping writes share one
transaction stay exact: quotas at the limit, Idempotency-Key retries, one failing member, kill -9.

Each test first holds the database's writer (SQLite: the machine-wide writer flock; PostgreSQL: a
SHARE lock on the month counters) so that the queries pile up behind the first one and the rest are
written as ONE batch when it is let go: the batch path is exercised for certain, not by luck.
Group commit is forced on for these tests on both databases (its default is on for SQLite only).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from market.accounts.models import Role
from market.errors import Conflict
from market.locks import lock, release
from metering import chain, group_commit
from metering import service as metering_service
from metering.models import UsageRecord
from tests.conftest import ON_POSTGRES, Actor, Market, running_market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.served import served
from tests.support.batches import (
    batch_market_fixture,
    batched,
    chains_verify,
    usage_records,
    writer_lock_path,
)
from tests.support.waiting import until

CONCURRENT = 24


market = batch_market_fixture(CONCURRENT)


def _buyer(market: Market, **decision: Any) -> tuple[Actor, str]:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    if decision:
        grant(market, listed, buyer, purpose="public_welfare", plan="public", **decision)
    else:
        grant(market, listed, buyer, purpose="commercial", plan="standard")
    return buyer, listed.slug


def test_one_batch_admits_exactly_the_quota(market: Market) -> None:
    quota = 7
    buyer, slug = _buyer(market, monthly_query_quota=quota)
    warm = query(market, buyer, slug, BY_REGION)
    assert warm.status_code == 200
    responses = batched(market, CONCURRENT, lambda i: query(market, buyer, slug, BY_REGION))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: quota - 1, 429: CONCURRENT - quota + 1}, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"quota_exhausted"}
    kinds = Counter(record.charge_type for record in usage_records(market))
    assert kinds == {"free_public": quota, "rejected": CONCURRENT - quota + 1}
    chains_verify(market, CONCURRENT + 1)


def test_retries_of_one_key_in_one_batch_are_one_record_and_one_charge(market: Market) -> None:
    buyer, slug = _buyer(market)
    assert query(market, buyer, slug, BY_REGION).status_code == 200
    keys = [f"key-{i % 4}" for i in range(CONCURRENT)]  # each key sent six times at once
    responses = batched(market, CONCURRENT, lambda i: query(market, buyer, slug, BY_REGION, key=keys[i]))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    by_key: dict[str, set[str]] = {}
    for key, response in zip(keys, responses, strict=True):
        by_key.setdefault(key, set()).add(response.json()["query_id"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    records = usage_records(market)
    assert Counter(r.idempotency_key for r in records if r.idempotency_key) == dict.fromkeys(by_key, 1)
    assert {r.id for r in records if r.idempotency_key} == {next(iter(ids)) for ids in by_key.values()}
    charged = {key: response.json()["charge"]["amount_minor"] for key, response in zip(keys, responses, strict=True)}
    assert sum(r.amount_minor for r in records if r.idempotency_key) == sum(charged.values())
    chains_verify(market, 1 + len(by_key))


def test_a_failing_member_fails_alone(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that raises inside the batch rolls back its own savepoint only: the others are written in
    the batch and answered 200 (not rolled back and run again one by one), the failing one runs again
    alone and gets its own error, and nothing is written twice."""
    buyer, slug = _buyer(market)
    assert query(market, buyer, slug, BY_REGION).status_code == 200
    original = metering_service._record

    def failing(session: Any, attempt: Any, *args: Any, **kwargs: Any) -> Any:
        if attempt.key is not None and attempt.key.startswith("bad-"):
            # Written first, then failing: its statements are in the batch when it raises.
            original(session, attempt, *args, **kwargs)
            raise Conflict("idempotency_conflict", key=attempt.key)
        return original(session, attempt, *args, **kwargs)

    monkeypatch.setattr(metering_service, "_record", failing)
    committer = group_commit.committer(market.database)
    failed_before = committer.stats.failed_batches
    alone_before = committer.stats.alone_after_batch
    keys = [f"bad-{i}" if i in (5, 17) else f"good-{i}" for i in range(CONCURRENT)]
    responses = batched(market, CONCURRENT, lambda i: query(market, buyer, slug, BY_REGION, key=keys[i]))
    assert committer.stats.failed_batches == failed_before
    assert committer.stats.alone_after_batch - alone_before == 2
    for key, response in zip(keys, responses, strict=True):
        if key.startswith("bad-"):
            assert response.status_code == 409, response.text
        else:
            assert response.status_code == 200, response.text
    records = usage_records(market)
    keyed = Counter(r.idempotency_key for r in records if r.idempotency_key)
    assert keyed == {key: 1 for key in keys if key.startswith("good-")}
    chains_verify(market, 1 + CONCURRENT - 2)


def test_group_commit_is_on_by_default_on_both_databases(database_factory: Any, tmp_path: Path) -> None:
    with running_market(database_factory, tmp_path / "data") as running:
        assert group_commit.enabled(running.database, running.settings)


@pytest.mark.skipif(ON_POSTGRES, reason="group commit is SQLite's default; the writer flock makes batches certain")
@pytest.mark.parametrize("delay", [0.0, 0.003, 0.01, 0.03])
def test_kill_9_mid_batch_answers_no_2xx_whose_record_is_missing(market: Market, tmp_path: Path, delay: float) -> None:
    """The served process is killed just after the writer is let go to a batch of queued writes: any
    request it answered 2xx has its record committed; every key retried afterwards is answered and
    recorded exactly once; the chains verify."""
    buyer, slug = _buyer(market)
    assert query(market, buyer, slug, BY_REGION).status_code == 200  # a record, and a warm cache on this side
    keys = [f"kill-{delay}-{i}" for i in range(CONCURRENT)]
    env = {
        "MARKET_METERING_GROUP_COMMIT": "1",
        "MARKET_SANDBOX_ORG_CONCURRENCY": str(CONCURRENT * 2),
        "MARKET_SANDBOX_QUEUE_SIZE": str(CONCURRENT * 2),
    }
    with served(market, tmp_path, **env) as server:

        def post(i: int) -> Any:
            headers = {**buyer.headers, "Idempotency-Key": keys[i]}
            try:
                return httpx.post(
                    f"{server.url}/v1/queries", headers=headers, json={"product": slug, "sql": BY_REGION}, timeout=60
                )
            except httpx.HTTPError as error:
                return error

        # Warm the served process (its result cache and its sandbox workers).
        warm = httpx.post(
            f"{server.url}/v1/queries", headers=buyer.headers, json={"product": slug, "sql": BY_REGION}, timeout=60
        )
        assert warm.status_code == 200, warm.text
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            fd = lock(writer_lock_path(market))
            try:
                futures: list[Future[Any]] = [pool.submit(post, i) for i in range(CONCURRENT)]
                time.sleep(1.5 + random.random() * 0.2)  # all of them reach the committer's queue
            finally:
                release(fd)
            time.sleep(delay)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=20)
            answers = [future.result(timeout=60) for future in futures]
    committed = {r.idempotency_key: r for r in usage_records(market) if r.idempotency_key}
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, httpx.Response) and answer.status_code < 300:
            assert key in committed, f"{key} was answered {answer.status_code} but its record is missing"
            assert committed[key].id == answer.json()["query_id"]
    for key in keys:  # a retry replays a committed attempt, or runs a lost one: exactly once
        retried = query(market, buyer, slug, BY_REGION, key=key)
        assert retried.status_code == 200, retried.text
        if key in committed:
            assert retried.json()["query_id"] == committed[key].id
    with market.database.transaction() as session:
        count = session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.idempotency_key.in_(keys))
        )
    assert count == CONCURRENT
    chains_verify(market, 1 + 1 + CONCURRENT)


def test_followers_get_their_own_values_in_order(tmp_path: Path) -> None:
    """The committer alone (no HTTP): every caller gets its own work's value, written in one transaction."""
    from market.db import Database, migrate
    from market.settings import Settings

    settings = Settings(data_dir=tmp_path, scheduler_enabled=False)
    database = Database.from_settings(settings)
    migrate(database)
    committer = group_commit.GroupCommit(database)
    gate = threading.Event()
    results: dict[int, int] = {}

    def work(i: int) -> Callable[[Any], int]:
        def run(session: Any) -> int:
            if i == 0:
                gate.wait(10)
            return int(session.execute(text(f"SELECT {i}")).scalar_one())

        return run

    with ThreadPoolExecutor(max_workers=16) as pool:
        first = pool.submit(committer.run, work(0))
        until(lambda: committer._leading, "the first call leads")
        rest = {i: pool.submit(committer.run, work(i)) for i in range(1, 16)}
        until(lambda: len(committer._pending) == 15, "fifteen calls queue")
        gate.set()
        results[0] = first.result(10)
        results |= {i: future.result(10) for i, future in rest.items()}
    assert results == {i: i for i in range(16)}
    assert committer.stats.batches == 2 and committer.stats.largest == 15
    database.dispose()


@pytest.mark.skipif(not ON_POSTGRES, reason="the pipelined lock upserts are PostgreSQL's (psycopg pipeline mode)")
def test_a_lock_timeout_inside_the_pipelined_locks_is_503_and_records_nothing(
    database_factory: Any, tmp_path: Path
) -> None:
    """The month counter's row is held by another transaction past lock_timeout: the pipelined upserts'
    error reaches the app as SQLAlchemy's (market.db.is_transient), 503 `database_busy`, never a 500;
    nothing is recorded, and the next query, once the lock is gone, is answered and recorded."""
    with running_market(database_factory, tmp_path / "data", database_lock_timeout_ms=300) as market:
        buyer, slug = _buyer(market)
        assert query(market, buyer, slug, BY_REGION).status_code == 200
        with market.database.engine.connect() as blocker:
            blocker.execute(text("BEGIN"))
            blocker.execute(text("SELECT * FROM agreement_months FOR UPDATE"))
            busy = query(market, buyer, slug, BY_REGION, key="held")
            blocker.execute(text("ROLLBACK"))
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "database_busy"
        assert [r.idempotency_key for r in usage_records(market)] == [None]
        again = query(market, buyer, slug, BY_REGION, key="held")
        assert again.status_code == 200, again.text
        chains_verify(market, 2)


def test_each_member_answers_in_its_own_requests_language(market: Market) -> None:
    """A member's work runs in its own request's context, whoever leads the batch: a zh-CN request and an
    English one written in the same batch each get the suppression rule in their own language."""
    buyer, slug = _buyer(market)

    def ask(i: int) -> Any:
        language = "zh-CN" if i % 2 else "en"
        return market.client.post(
            "/v1/queries",
            headers={**buyer.headers, "Accept-Language": language},
            json={"product": slug, "sql": BY_REGION},
        )

    rules = {i: ask(i).json()["suppression"]["rule"] for i in (0, 1)}
    assert rules[0] != rules[1], rules
    responses = batched(market, CONCURRENT, ask)
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["suppression"]["rule"] for r in responses] == [rules[i % 2] for i in range(CONCURRENT)]


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite's one writer lock orders every batch already")
def test_two_processes_batches_crossing_rows_do_not_deadlock(market: Market) -> None:
    """Two committers (two API processes' batches) each hold a batch of two writes that lock the same two
    chain heads in opposite orders, both started at once. Each batch takes all its members' locks first,
    in one global order (metering.group_commit.lock_order): one batch waits for the other, neither is
    chosen as a deadlock's victim, no batch fails, every write is committed once."""
    orgs = sorted(market.actor(Role.BUYER).principal.org_id for _ in range(2))
    both_hold_one = threading.Barrier(2)

    def locking(first: str, second: str, tag: str) -> Callable[[Any], str]:
        def work(session: Any) -> str:
            chain.lock_head(session, first)
            with contextlib.suppress(threading.BrokenBarrierError):
                both_hold_one.wait(timeout=3)  # without the ordered locks each batch now holds one head
            chain.lock_head(session, second)
            return tag

        return work

    def member(first: str, second: str, tag: str) -> Any:
        return group_commit._Member(locking(first, second, tag), [chain.head_upsert(first), chain.head_upsert(second)])

    committers = [group_commit.GroupCommit(market.database) for _ in range(2)]
    batches = [
        [member(orgs[0], orgs[1], "a1"), member(orgs[1], orgs[0], "a2")],
        [member(orgs[1], orgs[0], "b1"), member(orgs[0], orgs[1], "b2")],
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(c._write, batch) for c, batch in zip(committers, batches, strict=True)]:
            done.result(timeout=60)
    assert [c.stats.failed_batches for c in committers] == [0, 0]
    assert [[m.value for m in batch] for batch in batches] == [["a1", "a2"], ["b1", "b2"]]
    assert all(m.error is None for batch in batches for m in batch)
