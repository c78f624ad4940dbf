"""Red team red15 (session 11): money and quotas when many queries of one agreement share a group commit batch.

A batch reads its members' month counters once (metering.group_commit `_prefetch`) and defers their writes to
its end. A later member of the same agreement must be decided against the earlier members' deferred
increments, not against the counter the batch read up front: the fee cap, the trial queries, the per-query
tiers and the row quota all count this month's earlier queries. Each test holds the writer (SQLite: the
writer flock; PostgreSQL: a SHARE lock on the month counters) so that the queries are written as ONE batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from market.accounts.models import Role
from metering.models import UsageRecord
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.served import served
from tests.support.batches import batch_market_fixture, batched, chains_verify, usage_records

CONCURRENT = 24
ROWS_PER_QUERY = 180  # BY_REGION scans the whole `people` table of the test product
PLANS = [
    {"code": "public", "title": "Public interest", "kind": "public_interest", "monthly_query_quota": 1000},
    {
        "code": "capped",
        "title": "Commercial",
        "kind": "commercial",
        "trial_queries": 2,
        "per_query_minor": 150,
        "per_gb_minor": "0",
        "monthly_cap_minor": 1000,
    },
]


market = batch_market_fixture(CONCURRENT)


def _batched(market: Market, send: Callable[[int], Any]) -> list[Any]:
    return batched(market, CONCURRENT, send)


def _records(market: Market) -> list[UsageRecord]:
    """Every usage record, the chains verified over all of them."""
    found = usage_records(market)
    chains_verify(market, len(found))
    return found


def test_the_fee_cap_and_the_trial_hold_inside_one_batch(market: Market) -> None:
    """Two trial queries, then 150 a query up to a monthly cap of 1000: one warm query and 24 in one batch pay
    exactly 1000 in all (6 x 150, then the 100 left), every later one `cap_reached`, each answer's charge
    its record's."""
    listed = listed_product(market, plans=PLANS)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="capped")
    assert query(market, buyer, listed.slug, BY_REGION).json()["charge"]["charge_type"] == "trial"
    responses = _batched(market, lambda i: query(market, buyer, listed.slug, BY_REGION, key=f"cap-{i}"))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    records = _records(market)
    assert sum(r.amount_minor for r in records) == 1000
    assert Counter(r.charge_type for r in records) == {"trial": 2, "billable": 7, "cap_reached": 16}
    assert sorted(r.amount_minor for r in records if r.charge_type == "billable") == [100] + [150] * 6
    by_id = {r.id: r for r in records}
    for response in responses:
        body = response.json()
        record = by_id[body["query_id"]]
        assert (body["charge"]["charge_type"], body["charge"]["amount_minor"]) == (
            record.charge_type,
            record.amount_minor,
        )


@pytest.mark.parametrize("fits", [1, 5])
def test_the_row_quota_holds_inside_one_batch(market: Market, fits: int) -> None:
    """A monthly row quota that `fits` more queries after a warm one: exactly that many of 24 in one batch are
    answered, the rest refused (`row_quota_exhausted`, rejected, 0), and the rows counted never pass it."""
    listed = listed_product(market, plans=PLANS)
    buyer = market.actor(Role.BUYER)
    quota = ROWS_PER_QUERY * (fits + 1)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_row_quota=quota)
    warm = query(market, buyer, listed.slug, BY_REGION)
    assert warm.status_code == 200 and warm.json()["usage"]["rows_scanned"] == ROWS_PER_QUERY, warm.text
    responses = _batched(market, lambda i: query(market, buyer, listed.slug, BY_REGION))
    assert Counter(r.status_code for r in responses) == {200: fits, 429: CONCURRENT - fits}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"row_quota_exhausted"}
    records = _records(market)
    accepted = [r for r in records if r.charge_type != "rejected"]
    assert len(accepted) == fits + 1
    assert sum(r.rows_scanned for r in accepted) == quota
    assert all(r.amount_minor == 0 for r in records)


def test_the_fee_cap_holds_across_two_api_processes_batches(market: Market, tmp_path: Path) -> None:
    """The same capped plan, 48 queries at once against `market serve --workers 2` with group commit at its
    default: the two processes' batches meet on the one month counter (PostgreSQL: its row lock, taken up
    front in each batch; SQLite: the writer lock). 1000 charged in all, the counter equal to the records."""
    listed = listed_product(market, plans=PLANS)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="capped")
    env = {"MARKET_SANDBOX_ORG_CONCURRENCY": "96", "MARKET_SANDBOX_QUEUE_SIZE": "96"}
    with served(market, tmp_path, workers=2, **env) as server:

        def post(i: int) -> Any:
            return httpx.post(
                f"{server.url}/v1/queries",
                headers={**buyer.headers, "Idempotency-Key": f"two-{i}"},
                json={"product": listed.slug, "sql": BY_REGION},
                timeout=120,
            )

        with ThreadPoolExecutor(max_workers=48) as pool:
            answers = list(pool.map(post, range(48)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    records = _records(market)
    assert len(records) == 48
    assert sum(r.amount_minor for r in records) == 1000
    assert sum(a.json()["charge"]["amount_minor"] for a in answers) == 1000
    assert Counter(r.charge_type for r in records) == {"trial": 2, "billable": 7, "cap_reached": 39}
    with market.database.transaction() as session:
        months = session.execute(text("SELECT accepted_queries, charged_minor FROM agreement_months")).one()
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 48
    assert tuple(months) == (48, 1000)
