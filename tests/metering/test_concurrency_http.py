"""Concurrent queries through the real app and database: quotas admit exactly N, duplicates replay."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from market.accounts.models import Role
from metering import chain
from metering.models import UsageRecord
from tests.conftest import ON_POSTGRES, Market, running_market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION

CONCURRENT = 64


@pytest.fixture
def market(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    """Every query of a burst is admitted and waits for a worker: these tests are about the locks that
    decide quota and cap, so the per-organisation limit and the queue are set above the burst."""
    with running_market(
        database_factory,
        tmp_path / "data",
        sandbox_org_concurrency=CONCURRENT,
        sandbox_queue_size=CONCURRENT,
        sandbox_queue_timeout_seconds=300,
    ) as running:
        yield running


def _fire(market: Market, calls: int, send: Any) -> list[Any]:
    """Run `send(i)` from `calls` threads released at the same moment."""
    barrier = threading.Barrier(calls)

    def one(i: int) -> Any:
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one, range(calls)))


def test_a_quota_of_n_admits_exactly_n_of_64_concurrent_queries(market: Market) -> None:
    """On PostgreSQL the month counter's row lock decides; on SQLite the database write lock does."""
    quota = 10
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=quota)
    responses = _fire(market, CONCURRENT, lambda i: query(market, buyer, listed.slug, BY_REGION))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: quota, 429: CONCURRENT - quota}, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"quota_exhausted"}
    with market.database.transaction() as session:
        kinds = Counter(session.scalars(select(UsageRecord.charge_type)).all())
        assert kinds == {"free_public": quota, "rejected": CONCURRENT - quota}
        report = chain.verify(session)
        assert report.ok and report.records == CONCURRENT, report.breaks


def test_a_cap_is_never_overspent_under_concurrent_queries(market: Market) -> None:
    listed = listed_product(
        market,
        plans=[
            {"code": "paid", "title": "Paid", "kind": "commercial", "per_query_minor": 300, "monthly_cap_minor": 1000}
        ],
    )
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="paid")
    calls = 16 if not ON_POSTGRES else 32
    responses = _fire(market, calls, lambda i: query(market, buyer, listed.slug, BY_REGION))
    assert all(r.status_code == 200 for r in responses)
    charges = [r.json()["charge"] for r in responses]
    assert sum(c["amount_minor"] for c in charges) == 1000
    assert Counter(c["charge_type"] for c in charges) == {"billable": 4, "cap_reached": calls - 4}


def test_concurrent_retries_with_one_idempotency_key_replay_and_record_once(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    calls = 12
    responses = _fire(market, calls, lambda i: query(market, buyer, listed.slug, BY_REGION, key="same-key"))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["query_id"] for r in responses}) == 1
    with market.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 1


def test_two_buyers_chains_stay_valid_under_concurrency(market: Market) -> None:
    listed = listed_product(market)
    buyers = [market.actor(Role.BUYER) for _ in range(2)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="public_welfare", plan="public")
    sqls = [BY_REGION, "SELECT max(amount) FROM people"]  # accepted and refused attempts interleave
    _fire(market, 24, lambda i: query(market, buyers[i % 2], listed.slug, sqls[(i // 2) % 2]))
    with market.database.transaction() as session:
        report = chain.verify(session)
    assert report.ok and report.chains == 2 and report.records == 24, report.breaks
