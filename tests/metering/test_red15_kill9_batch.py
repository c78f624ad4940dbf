"""Red team red15 (session 11): kill -9 of a real API process while a group commit batch is written, with group
commit at its DEFAULT (on for both databases since dash-p99; test_group_commit_http's kill test forces it on and
runs on SQLite only).

On PostgreSQL a batch takes its members' row locks up front and sends their deferred writes as one pipeline
before its COMMIT: a process killed between them must leave every member whole or absent, answer no 2xx whose
record is missing, and a retry of every key must be answered and recorded exactly once, the chains unbroken.
The delays between letting the writer go and the kill span the batch on this machine at load 8 (PostgreSQL:
0.03-0.15 s found the leader's write committed and the batch's not; 0.3 s all 24 answered).
"""

from __future__ import annotations

import os
import random
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from market.accounts.models import Role
from metering import chain
from metering.models import UsageRecord
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.served import served
from tests.support.batches import writer_held

CONCURRENT = 24


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.25])
def test_kill_9_while_a_default_batch_is_written_leaves_every_member_whole_or_absent(
    market: Market, tmp_path: Path, delay: float
) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    keys = [f"kill-{delay}-{i}" for i in range(CONCURRENT)]
    env = {
        "MARKET_SANDBOX_ORG_CONCURRENCY": str(CONCURRENT * 2),
        "MARKET_SANDBOX_QUEUE_SIZE": str(CONCURRENT * 2),
        "MARKET_DATABASE_LOCK_TIMEOUT_MS": "60000",
    }
    with served(market, tmp_path, **env) as server:

        def post(i: int) -> Any:
            headers = {**buyer.headers, "Idempotency-Key": keys[i]}
            try:
                return httpx.post(
                    f"{server.url}/v1/queries",
                    headers=headers,
                    json={"product": listed.slug, "sql": BY_REGION},
                    timeout=60,
                )
            except httpx.HTTPError as error:
                return error

        warm = httpx.post(
            f"{server.url}/v1/queries",
            headers=buyer.headers,
            json={"product": listed.slug, "sql": BY_REGION},
            timeout=60,
        )
        assert warm.status_code == 200, warm.text
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            with writer_held(market):
                futures: list[Future[Any]] = [pool.submit(post, i) for i in range(CONCURRENT)]
                # The served process's queue cannot be seen from here: give the requests time to reach it.
                time.sleep(2.0 + random.random() * 0.2)
            time.sleep(delay)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=20)
            answers = [future.result(timeout=60) for future in futures]
    with market.database.transaction() as session:
        committed = {r.idempotency_key: r.id for r in session.scalars(select(UsageRecord)) if r.idempotency_key}
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, httpx.Response) and answer.status_code < 300:
            assert committed.get(key) == answer.json()["query_id"], f"{key} answered {answer.status_code}, not kept"
    for key in keys:
        retried = query(market, buyer, listed.slug, BY_REGION, key=key)
        assert retried.status_code == 200, retried.text
        if key in committed:
            assert retried.json()["query_id"] == committed[key]
    with market.database.transaction() as session:
        count = session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.idempotency_key.in_(keys))
        )
        charged = session.scalar(select(func.sum(UsageRecord.amount_minor)))
        months = session.execute(text("SELECT sum(accepted_queries), sum(charged_minor) FROM agreement_months")).one()
        report = chain.verify(session)
    assert count == CONCURRENT
    # The month counter (what caps and quotas read) agrees with the records: no member counted and not recorded.
    assert tuple(months) == (2 + CONCURRENT, charged), (months, charged)
    assert report.ok and report.records == 2 + CONCURRENT, report.breaks
