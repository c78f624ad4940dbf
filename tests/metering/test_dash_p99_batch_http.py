"""Group commit's batch reads its members' locked rows up front (branch dash-p99): one upsert per table for the
whole batch on SQLite, instead of two statements per member under the machine-wide writer lock; and on
PostgreSQL the members use the rows the batch's ordered locks already returned. Counted, never timed.

Exactness is what the rows are for: a row is handed to the first member that locks it, once; a member that
does not read its rows through the batch (a refusal) makes the batch forget every row read up front, so
nobody is handed a row it wrote since. Group commit is forced on (tests/metering/test_group_commit_http.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import event, func, select

from market.accounts.models import Role
from metering import group_commit
from metering.models import AgreementMonth, UsageRecord
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.support.batches import batch_market_fixture, batched, chains_verify, writer_held
from tests.support.waiting import until

market = batch_market_fixture(24)

BUYERS = 6
REFUSED = "SELECT * FROM people"  # rows, not aggregates: refused by the sandbox, recorded as a refusal


def _upserts(market: Market) -> tuple[dict[str, int], Any]:
    counts = {"agreement_months": 0, "usage_chain_heads": 0}

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if words[:2] == ["INSERT", "INTO"] and words[2] in counts and "ON CONFLICT" in statement:
            counts[words[2]] += 1

    return counts, count


def _counters_match_records(market: Market) -> None:
    with market.database.transaction() as session:
        for counter in session.scalars(select(AgreementMonth)):
            count, charged = session.execute(
                select(func.count(), func.coalesce(func.sum(UsageRecord.amount_minor), 0)).where(
                    UsageRecord.agreement_id == counter.agreement_id, UsageRecord.charge_type != "rejected"
                )
            ).one()
            assert (counter.accepted_queries, counter.charged_minor) == (count, charged)


def test_a_batch_locks_its_members_rows_once_not_per_member(market: Market) -> None:
    listed = listed_product(market)
    buyers = [market.actor(Role.BUYER) for _ in range(BUYERS)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="commercial", plan="standard")
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200  # cached from here on
    counts, count = _upserts(market)
    committer = group_commit.committer(market.database)
    alone_before, failed_before = committer.stats.alone_after_batch, committer.stats.failed_batches
    event.listen(market.database.engine, "before_cursor_execute", count)
    try:
        responses = batched(market, BUYERS, lambda i: query(market, buyers[i], listed.slug, BY_REGION))
    finally:
        event.remove(market.database.engine, "before_cursor_execute", count)
    assert [r.status_code for r in responses] == [200] * BUYERS, [r.text for r in responses]
    # The first request's write runs alone (it waited for the writer); the other BUYERS - 1 are one batch.
    # Before: every member upserted its counter and its head itself, BUYERS of each in all (PostgreSQL: twice
    # that, the batch's ordered locks and then each member's own). Now: the batch's own, and no member's:
    # one multi-row upsert per table for the whole batch (PostgreSQL since branch pg-dash; before it, one
    # upsert per member in the batch's pipeline, BUYERS in all).
    assert counts == {"agreement_months": 2, "usage_chain_heads": 2}, counts
    assert committer.stats.alone_after_batch == alone_before and committer.stats.failed_batches == failed_before
    chains_verify(market, 2 * BUYERS)
    _counters_match_records(market)


def test_a_refusal_in_the_batch_leaves_no_member_a_row_read_before_it(market: Market) -> None:
    """In order: a refusal of buyer A (it locks and moves A's chain head itself), then A's answered queries.
    The first of those must lock A's head again, not take the one the batch read before the refusal: that
    one is a link behind, and the member would fail on the chain (and run again alone)."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    committer = group_commit.committer(market.database)
    alone_before, failed_before = committer.stats.alone_after_batch, committer.stats.failed_batches
    sqls = [BY_REGION, REFUSED, BY_REGION, BY_REGION, REFUSED, BY_REGION]
    with ThreadPoolExecutor(max_workers=len(sqls)) as pool:
        with writer_held(market):
            futures = []
            for i, sql in enumerate(sqls):  # one at a time, so that they queue in this order
                futures.append(pool.submit(query, market, buyer, listed.slug, sql))
                if i == 0:  # the leader: its write alone, waiting for the held writer
                    until(lambda: committer._leading and not committer._pending, "the first write leads")
                else:
                    until(lambda i=i: len(committer._pending) >= i, f"{i} writes queue")
        responses = [future.result(timeout=120) for future in futures]
    assert [r.status_code for r in responses] == [200 if sql == BY_REGION else 422 for sql in sqls]
    assert committer.stats.largest >= len(sqls) - 1
    assert committer.stats.alone_after_batch == alone_before and committer.stats.failed_batches == failed_before
    chains_verify(market, 1 + len(sqls))
    _counters_match_records(market)
