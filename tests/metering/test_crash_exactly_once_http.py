"""Red team (session 5): exactly once under `kill -9` of a real `market serve` process.

The API process is killed while a metered query waits in the admission queue, while a single-flight
leader waits with followers behind it, and while it holds the SQLite writer lock (on PostgreSQL: while
its transaction 3 waits for a row lock). Afterwards: no admission slot or writer lock is left held,
no usage record was half-written, every buyer's hash chain verifies, the sandbox workers of the dead
process have gone, and a retry with the same Idempotency-Key is answered and charged exactly once.
Also one Idempotency-Key sent to two API processes at once: one record, one charge.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text

from market.accounts.models import Role
from market.locks import release, try_lock
from metering import chain
from metering.models import UsageRecord
from metering.service import sandbox_admission
from tests.conftest import Actor, Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.served import Served, served
from tests.support.busy_sandbox import market_fixture
from tests.support.waiting import until

LIMITS: dict[str, Any] = {
    "sandbox_workers": 1,
    "sandbox_org_concurrency": 2,
    "sandbox_queue_size": 4,
    "sandbox_queue_timeout_seconds": 120.0,
}
ENV = {
    "MARKET_SANDBOX_WORKERS": "1",
    "MARKET_SANDBOX_ORG_CONCURRENCY": "2",
    "MARKET_SANDBOX_QUEUE_SIZE": "4",
    "MARKET_SANDBOX_QUEUE_TIMEOUT_SECONDS": "120",
}


market = market_fixture(**LIMITS)


def _buyers(market: Market, count: int) -> list[Actor]:
    listed = listed_product(market, "people-trips")
    buyers = [market.actor(Role.BUYER) for _ in range(count)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="commercial", plan="standard")
    return buyers


def _send(pool: ThreadPoolExecutor, server: Served, buyer: Actor, key: str, sql: str = BY_REGION) -> Future[Any]:
    def post() -> Any:
        headers = {**buyer.headers, "Idempotency-Key": key}
        try:
            return httpx.post(f"{server.url}/v1/queries", headers=headers, json={"product": "people-trips", "sql": sql})
        except httpx.HTTPError as error:  # the server was killed under it
            return error

    return pool.submit(post)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(p) for p in listed.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _kill(server: Served) -> list[int]:
    """SIGKILL the API process (what the OOM killer does); its children's ids, to watch them go."""
    children = _children(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=20)
    return children


def _records(market: Market, key: str) -> list[UsageRecord]:
    with market.database.transaction() as session:
        found = list(session.scalars(select(UsageRecord).where(UsageRecord.idempotency_key == key)))
        session.expunge_all()
        return found


def _assert_nothing_left(market: Market, orphans: list[int], buyers: list[Actor]) -> None:
    admission = sandbox_admission(market.settings)
    slots = admission.worker_slots() + admission.queue_slots()
    for buyer in buyers:
        slots += admission.org_slots(buyer.principal.org_id)
    assert admission.held(slots) == 0, "a slot of the dead process is still held"
    if market.database.is_sqlite:
        database = market.settings.effective_database_url.split("///", 1)[1]
        writer = try_lock(Path(f"{database}.writer-lock"))
        assert writer is not None, "the dead process's SQLite writer lock is still held"
        release(writer)
    # The dead process's sandbox workers see their pipe close and leave.
    until(lambda: not any(_alive(pid) for pid in orphans), "the dead process's sandbox workers exit", 30)


def _assert_exactly_once(market: Market, buyer: Actor, key: str) -> None:
    assert _records(market, key) == [], "a record of the killed attempt was committed"
    first = query(market, buyer, "people-trips", BY_REGION, key=key)
    assert first.status_code == 200, first.text
    assert first.json()["charge"]["charge_type"] == "billable"
    again = query(market, buyer, "people-trips", BY_REGION, key=key)
    assert again.status_code == 200 and again.json()["query_id"] == first.json()["query_id"]
    records = _records(market, key)
    assert len(records) == 1 and records[0].charge_type == "billable" and records[0].amount_minor > 0


def _assert_chains(market: Market) -> None:
    with market.database.transaction() as session:
        report = chain.verify(session)
    assert report.ok, report.breaks


def test_killed_while_waiting_in_the_admission_queue(market: Market, tmp_path: Path) -> None:
    (buyer,) = _buyers(market, 1)
    admission = sandbox_admission(market.settings)
    with ThreadPoolExecutor(4) as pool, served(market, tmp_path, **ENV) as server:
        assert query(market, buyer, "people-trips", BY_REGION).status_code == 200  # warm: workers exist
        with admission.occupy(admission.worker_slots()):
            sent = _send(pool, server, buyer, "queued-then-killed")
            until(lambda: admission.held(admission.queue_slots()) == 1, "the query waits in the queue")
            orphans = _kill(server)
            assert isinstance(sent.result(timeout=30), httpx.HTTPError)
        _assert_nothing_left(market, orphans, [buyer])
    _assert_exactly_once(market, buyer, "queued-then-killed")
    _assert_chains(market)


def test_killed_while_a_single_flight_leader_has_followers(market: Market, tmp_path: Path) -> None:
    buyers = _buyers(market, 3)
    admission = sandbox_admission(market.settings)
    with ThreadPoolExecutor(4) as pool, served(market, tmp_path, **ENV) as server:
        with admission.occupy(admission.worker_slots()):
            sent = [_send(pool, server, b, f"flight-{i}") for i, b in enumerate(buyers)]
            # One leader in the queue; the others wait for it in the flight (each holds its org slot).
            until(lambda: admission.held(admission.queue_slots()) == 1, "the leader waits in the queue")
            for buyer in buyers:
                until(lambda b=buyer: admission.held(admission.org_slots(b.principal.org_id)) == 1, "all arrived")
            time.sleep(0.3)  # the followers reach the flight
            assert admission.held(admission.queue_slots()) == 1  # followers do not queue
            orphans = _kill(server)
            assert all(isinstance(s.result(timeout=30), httpx.HTTPError) for s in sent)
        _assert_nothing_left(market, orphans, buyers)
    for i, buyer in enumerate(buyers):
        _assert_exactly_once(market, buyer, f"flight-{i}")
    _assert_chains(market)


def test_killed_while_holding_the_write_lock(market: Market, tmp_path: Path) -> None:
    (buyer,) = _buyers(market, 1)
    assert query(market, buyer, "people-trips", BY_REGION, key="before").status_code == 200
    with ThreadPoolExecutor(4) as pool, served(market, tmp_path, **ENV) as server:
        if market.database.is_sqlite:
            # Another writer (as the CLI is) holds SQLite's own lock: the server's transaction 3 takes the
            # machine-wide writer flock, then waits in BEGIN IMMEDIATE. Killed there.
            database = market.settings.effective_database_url.split("///", 1)[1]
            blocker = sqlite3.connect(database, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            writer = Path(f"{database}.writer-lock")

            def holds_lock() -> bool:
                fd = try_lock(writer)
                release(fd)
                return fd is None

            try:
                sent = _send(pool, server, buyer, "locked-then-killed")
                until(holds_lock, "the server holds the writer lock")
                orphans = _kill(server)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
        else:
            # PostgreSQL: transaction 3 waits for a lock on usage_records (its insert) and is killed there.
            with market.database.engine.connect() as blocker:
                blocker.execute(text("BEGIN"))
                blocker.execute(text("LOCK TABLE usage_records IN SHARE MODE"))
                sent = _send(pool, server, buyer, "locked-then-killed")
                with market.database.engine.connect() as probe:

                    def waits() -> bool:
                        found = probe.execute(
                            text(
                                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query ILIKE '%usage_records%' AND datname = current_database()"
                            )
                        ).scalar()
                        probe.rollback()  # pg_stat_activity is a snapshot per transaction
                        return bool(found)

                    until(waits, "the server's insert waits for the lock")
                orphans = _kill(server)
                blocker.execute(text("ROLLBACK"))
        assert isinstance(sent.result(timeout=30), httpx.HTTPError)
        _assert_nothing_left(market, orphans, [buyer])
    _assert_exactly_once(market, buyer, "locked-then-killed")
    _assert_chains(market)


def test_one_idempotency_key_sent_to_two_api_processes_at_once_is_answered_and_charged_once(
    market: Market, tmp_path: Path
) -> None:
    buyer, other = _buyers(market, 2)
    barrier = threading.Barrier(12)

    def post(server: Served, who: Actor) -> httpx.Response:
        barrier.wait(timeout=60)
        headers = {**who.headers, "Idempotency-Key": "twice"}
        return httpx.post(
            f"{server.url}/v1/queries", headers=headers, json={"product": "people-trips", "sql": BY_REGION}, timeout=120
        )

    with (
        served(market, tmp_path, **ENV) as first,
        served(market, tmp_path, **ENV) as second,
        ThreadPoolExecutor(12) as pool,
    ):
        # Five of each process's six from the buyer, one from another organisation with the same key.
        sent = [pool.submit(post, server, other if i == 5 else buyer) for server in (first, second) for i in range(6)]
        answers = [s.result(timeout=120) for s in sent]
    mine = [a for i, a in enumerate(answers) if i % 6 != 5]
    assert all(a.status_code in (200, 429) for a in answers), [a.text for a in answers]
    served_ids = {a.json()["query_id"] for a in mine if a.status_code == 200}
    assert len(served_ids) == 1, served_ids  # every 200 is the one stored answer
    records = [r for r in _records(market, "twice") if r.buyer_org_id == buyer.principal.org_id]
    assert len(records) == 1 and records[0].charge_type == "billable"
    theirs = [r for r in _records(market, "twice") if r.buyer_org_id == other.principal.org_id]
    assert len(theirs) == 1  # the same key in another organisation is another query
    _assert_chains(market)
