"""The lean metered path (issue 12, branch perf-api): what a cached answer costs the database, and the
connection pool and process settings the API runs under. Counted, never timed.

A cached answer is still metered, audited and charged: its record links into the buyer's chain, and the
month's counter moves by exactly what the records say.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import sessionmaker

from market import app as market_app
from market import db as market_db
from market.accounts.models import Role
from market.db import begin_write, make_engine
from metering import chain
from metering.models import AgreementMonth, UsageRecord
from tests.conftest import ON_POSTGRES, Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, usage


def _statements(market: Market) -> tuple[list[str], Any]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split())[:60])

    return seen, count


def test_a_cached_answer_costs_three_statements_on_postgresql_and_is_recorded_whole(market: Market) -> None:
    """PostgreSQL: the counter's upsert, the chain head's upsert, then one INSERT of the usage record that
    also moves the head and the counter (data-modifying CTEs); no pre-ping. SQLite: BEGIN IMMEDIATE and
    the same writes one by one. No connection is opened for it. The chain verifies and the counter
    equals the sum of the records, whichever path wrote them."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for _ in range(3):  # the answer, the key and the agreement are cached from here on
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    seen, count = _statements(market)
    connects: list[object] = []
    engine = market.database.engine
    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine.pool, "connect", lambda *_: connects.append(1))
    try:
        answered = query(market, buyer, listed.slug, BY_REGION)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert answered.status_code == 200, answered.text
    assert len(seen) == (6 if not ON_POSTGRES else 3), seen
    assert not any(statement.upper().startswith("SELECT") for statement in seen), seen
    assert connects == []
    records = usage(market, buyer)
    assert len(records) == 4
    assert answered.json()["query_id"] in {r["id"] for r in records}
    with market.database.transaction() as session:
        assert chain.verify(session).ok
        counter = session.scalars(select(AgreementMonth)).one()
        totals = session.execute(
            select(func.count(), func.sum(UsageRecord.amount_minor), func.sum(UsageRecord.rows_scanned))
        ).one()
        assert (counter.accepted_queries, counter.charged_minor, counter.rows_scanned) == tuple(totals)


def test_concurrent_requests_reuse_pooled_connections(database_factory: Any) -> None:
    """Twelve threads holding a connection at once, twice: the second round opens none (before: the
    pool kept 5 on SQLite and 10 on PostgreSQL and opened and closed the rest for every request)."""
    url = database_factory.new_database()
    engine = make_engine(url)
    connects: list[object] = []
    event.listen(engine.pool, "connect", lambda *_: connects.append(1))
    try:
        for _ in range(2):
            barrier = threading.Barrier(12)

            threads = [threading.Thread(target=_hold, args=(engine, barrier)) for _ in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert len(connects) == 12
    finally:
        engine.dispose()
        database_factory.release(url)


def _hold(engine: Any, barrier: threading.Barrier) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        barrier.wait(timeout=30)


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's machine-wide writer lock")
def test_a_writer_waiting_for_the_sqlite_writer_lock_holds_no_connection(database_factory: Any) -> None:
    """With two pooled connections, one writer holding the lock and a second one waiting for it, a
    reader still gets the other connection (before: the waiting writer had checked it out first)."""
    url = database_factory.new_database()
    engine = make_engine(url, pool_size=2, max_overflow=0, pool_timeout=2)
    sessions = sessionmaker(engine)
    try:
        with sessions() as holder:
            begin_write(holder)
            waiting = threading.Thread(target=_write_once, args=(sessions,))
            waiting.start()
            time.sleep(0.3)  # let it reach the lock (not a timing assertion: it waits there until we commit)
            with engine.connect() as reader:
                assert reader.execute(text("SELECT 1")).scalar() == 1
            holder.commit()
        waiting.join(timeout=30)
        assert not waiting.is_alive()
    finally:
        engine.dispose()
        database_factory.release(url)


def _write_once(sessions: Any) -> None:
    with sessions() as session:
        begin_write(session)
        session.commit()


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL connections can be killed from outside")
def test_an_idle_connection_killed_by_the_server_is_replaced_not_failed(
    database_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pool_pre_ping, a connection idle longer than PING_AFTER_IDLE_SECONDS is pinged at checkout
    and, if dead, replaced: the transaction that wanted it succeeds."""
    monkeypatch.setattr(market_db, "PING_AFTER_IDLE_SECONDS", 0.0)
    url = database_factory.new_database()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        admin = make_engine(url, pool_size=1)
        with admin.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()
        database_factory.release(url)


def test_an_api_process_is_tuned_before_it_serves(market: Market) -> None:
    """The GIL's switch interval is short, and the start-up heap is out of the collector's view."""
    assert market.client.get("/healthz").status_code == 200
    assert sys.getswitchinterval() == pytest.approx(market_app.SWITCH_INTERVAL_SECONDS)
    assert gc.get_freeze_count() > 0


def test_a_cached_answer_under_a_quota_reads_the_counter_once_and_is_refused_as_before(market: Market) -> None:
    """With a quota, a cached answer's early quota check moves into transaction 3 (the counter is read
    once, under its lock, not also in transaction 1); a quota used up is refused and recorded exactly as
    the early check records it: 429 `quota_exhausted`, nothing scanned, no statement run, for 0."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="industry", plan="standard", monthly_query_quota=3)
    other = "SELECT region, count(*) AS n FROM people GROUP BY region"
    for sql in (BY_REGION, BY_REGION, other):  # the third uses the quota up; BY_REGION's answer is cached
        assert query(market, buyer, listed.slug, sql).status_code == 200
    seen, count = _statements(market)
    engine = market.database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        cached = query(market, buyer, listed.slug, BY_REGION)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    uncached = query(market, buyer, listed.slug, "SELECT region, sum(amount) AS total FROM people GROUP BY region")
    for refused in (cached, uncached):
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exhausted", refused.text
    assert not any(statement.upper().startswith("SELECT") for statement in seen), seen
    records = {r["id"]: r for r in usage(market, buyer)}
    fields = ("charge_type", "amount_minor", "rows_scanned", "bytes_scanned", "result_rows", "error_code")
    first, second = (records[r.json()["error"]["query_id"]] for r in (cached, uncached))
    assert {f: first.get(f) for f in fields} == {f: second.get(f) for f in fields}
    with market.database.transaction() as session:
        assert chain.verify(session).ok
        assert session.scalars(select(AgreementMonth)).one().accepted_queries == 3
