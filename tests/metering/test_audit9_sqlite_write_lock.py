"""Audit of issue 12 (branch audit9): on SQLite the metered query path takes the write lock up front.

Issue 12: "On SQLite, take the write lock once, up front (`BEGIN IMMEDIATE`), instead of busy-retrying", and
"no request ever waits on a busy-retry loop". A write inside a deferred transaction (pysqlite's implicit
`BEGIN` before the first INSERT or UPDATE, or a write in autocommit) asks for the lock only when it writes,
and then waits in SQLite's busy handler, which sleeps and retries. market.db.begin_write queues writers on a
file lock in the kernel and then starts `BEGIN IMMEDIATE`. tests/metering/test_metered_path_http.py checks
that a waiting writer holds no connection; nothing checked that every write of the query path goes that way.

Here every statement SQLite runs for concurrent `POST /v1/queries` (several buyers, uncached and cached
answers, Idempotency-Key replays, refusals by the validator and by the organisation's limit, and a DP
product's queries: reservation, answer, stored repeat) is traced per connection, and every INSERT, UPDATE or
DELETE must run inside a transaction begun with `BEGIN IMMEDIATE`.

Found on main: the refusals transaction 1 records (429 `too_many_queries`, a revoked or expired agreement,
a quota already used up) and every write of the DP path ran in deferred transactions (pysqlite's `BEGIN`).
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event

from market.accounts.models import Role
from tests.conftest import ON_POSTGRES, Market
from tests.factories import dp_policy, grant, listed_product, query
from tests.metering.helpers import BY_REGION

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write lock (PostgreSQL locks rows)")

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
BEGIN = re.compile(r"^\s*BEGIN\b\s*(\w*)", re.IGNORECASE)
END = re.compile(r"^\s*(COMMIT|ROLLBACK|END)\b", re.IGNORECASE)


def _trace(market: Market) -> dict[int, list[str]]:
    """Every statement each DB-API connection of the app's engine runs from now on, in order."""
    statements: dict[int, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def attach(dbapi_connection: Any, *_: Any) -> None:
        key = id(dbapi_connection)

        def record(sql: str) -> None:
            with lock:
                statements[key].append(sql)

        dbapi_connection.set_trace_callback(record)

    event.listen(market.database.engine, "connect", attach)
    event.listen(market.database.engine, "checkout", attach)
    return statements


def _writes_outside_immediate(statements: list[str]) -> list[str]:
    found, state = [], None  # None: autocommit; else the BEGIN's kind ("" for deferred)
    for sql in statements:
        if begun := BEGIN.match(sql):
            state = begun.group(1).upper()
        elif END.match(sql):
            state = None
        elif WRITE.match(sql) and state != "IMMEDIATE":
            found.append(f"{state!r}: {sql[:120]}")
    return found


def test_every_write_of_concurrent_queries_is_inside_begin_immediate(market: Market) -> None:
    listed = listed_product(market)
    private = listed_product(market, "people-dp", policy=dp_policy())
    buyers = [market.actor(Role.BUYER) for _ in range(6)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="commercial", plan="standard")
        grant(market, private, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    statements = _trace(market)
    sqls = [BY_REGION, "SELECT region, count(*) AS n FROM people GROUP BY region", "SELECT max(amount) FROM people"]

    def one(i: int) -> int:
        buyer = buyers[i % len(buyers)]
        key = f"key-{i % 4}" if i % 3 == 0 else None  # a few keys sent again: replays
        slug = private.slug if i % 5 == 4 else listed.slug
        return int(query(market, buyer, slug, sqls[i % len(sqls)], key=key).status_code)

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(one, range(40)))
    # 429: a buyer's second query in flight (one per organisation on two cores), recorded, so written too;
    # 409: a key sent again with another query.
    assert set(statuses) <= {200, 409, 422, 429}, statuses
    assert statuses.count(200) >= 3, statuses
    traced = [sql for per_connection in statements.values() for sql in per_connection]
    assert any(WRITE.match(sql) for sql in traced)  # the trace saw the metering's writes
    outside = {key: found for key, sqls_run in statements.items() if (found := _writes_outside_immediate(sqls_run))}
    assert outside == {}
