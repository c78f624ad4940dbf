"""Helper mut16 (session 12): the group commit batch tests catch the mutations of metering.group_commit and
metering.service that tidy16's batch tests missed.

Why they were missed: every earlier batch test sent one buyer's queries, and a batch whose members mishandle
one buyer's chain head (a prefetched row handed to every member, a row read before the deferred writes are
flushed, a head never moved) breaks the unique (buyer, chain_seq) index at its deferred writes. The batch is
then rolled back and every member runs again alone, on the exact path: the answers and the records come out
right, and only the committer's stats show that no batch was ever committed. Here a one-buyer batch must
commit as ONE batch (no failed batch, no member rerun), and a batch of many buyers, whose heads nothing else
checks, must leave each head on its last record, so that the chain verifies and the NEXT query of each buyer
(a second batch, a lone query) links on. A query refused because its quota was already used up must be
recorded as such (nothing scanned, `needed` 0), as a lone query's early refusal is, when transaction 1 left
that check to the batch (`quota_deferred`: its answer was cached).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from market.accounts.models import Role
from metering import group_commit
from tests.conftest import Actor, Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.support.batches import batch_market_fixture, batched, chains_verify, usage_records

CONCURRENT = 24
BUYERS = 6
ROWS_PER_QUERY = 180  # BY_REGION scans the whole `people` table of the test product

market = batch_market_fixture(CONCURRENT)


def _public_buyer(market: Market, listed: Any = None, **decision: Any) -> tuple[Actor, str]:
    listed = listed or listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", **decision)
    return buyer, listed.slug


def _stats(market: Market) -> tuple[int, int]:
    stats = group_commit.committer(market.database).stats
    return stats.failed_batches, stats.alone_after_batch


def test_one_buyers_batch_at_its_row_quota_commits_as_one_batch(market: Market) -> None:
    """24 queries of one buyer, 5 of which fit its row quota, in one batch: the batch commits as it is (no
    failed batch, no member run again alone), 5 answered, the rest refused, the chain verified."""
    buyer, slug = _public_buyer(market, monthly_row_quota=ROWS_PER_QUERY * 6)
    assert query(market, buyer, slug, BY_REGION).status_code == 200
    before = _stats(market)
    responses = batched(market, CONCURRENT, lambda i: query(market, buyer, slug, BY_REGION))
    assert _stats(market) == before, "the batch was rolled back and its members run again alone"
    assert Counter(r.status_code for r in responses) == {200: 5, 429: CONCURRENT - 5}
    records = usage_records(market)
    assert sum(r.rows_scanned for r in records if r.charge_type != "rejected") == ROWS_PER_QUERY * 6
    chains_verify(market, CONCURRENT + 1)


def test_a_batch_of_many_buyers_moves_every_head_and_the_next_queries_link_on(market: Market) -> None:
    """Queries of 6 buyers in one batch, then a second batch, then one lone query each: every chain verifies
    after each step, its head on its last record, and every query is answered."""
    listed = listed_product(market)
    buyers = [_public_buyer(market, listed, monthly_query_quota=1000) for _ in range(BUYERS)]

    def send(i: int) -> Any:
        buyer, slug = buyers[i % BUYERS]
        return query(market, buyer, slug, BY_REGION)

    before = _stats(market)
    first = batched(market, CONCURRENT, send)
    assert [r.status_code for r in first] == [200] * CONCURRENT, [r.text for r in first if r.status_code != 200]
    chains_verify(market, CONCURRENT)
    second = batched(market, CONCURRENT, send)
    assert [r.status_code for r in second] == [200] * CONCURRENT, [r.text for r in second if r.status_code != 200]
    chains_verify(market, 2 * CONCURRENT)
    assert _stats(market) == before, "a batch was rolled back and its members run again alone"
    lone = [send(i) for i in range(BUYERS)]
    assert [r.status_code for r in lone] == [200] * BUYERS, [r.text for r in lone]
    chains_verify(market, 2 * CONCURRENT + BUYERS)
    by_buyer = Counter(r.buyer_org_id for r in usage_records(market))
    assert sorted(by_buyer.values()) == [2 * CONCURRENT // BUYERS + 1] * BUYERS


def test_a_batch_of_one_query_per_buyer_leaves_each_head_on_its_record(market: Market) -> None:
    """One query of each of 8 buyers in one batch (no buyer twice: nothing in the batch reads a head after
    another member moved it, so a head left behind would be committed), then one lone query each: every
    answer 200, every chain verified (the verifier checks each head against its chain's last record) and
    two records long."""
    listed = listed_product(market)
    buyers = [_public_buyer(market, listed, monthly_query_quota=1000) for _ in range(8)]

    def send(i: int) -> Any:
        buyer, slug = buyers[i]
        return query(market, buyer, slug, BY_REGION)

    before = _stats(market)
    first = batched(market, len(buyers), send)
    assert [r.status_code for r in first] == [200] * len(buyers), [r.text for r in first]
    assert _stats(market) == before, "the batch was rolled back and its members run again alone"
    chains_verify(market, len(buyers))
    lone = [send(i) for i in range(len(buyers))]
    assert [r.status_code for r in lone] == [200] * len(buyers), [r.text for r in lone]
    chains_verify(market, 2 * len(buyers))
    assert sorted(Counter(r.buyer_org_id for r in usage_records(market)).values()) == [2] * len(buyers)


def test_a_quota_used_up_is_refused_in_a_batch_as_alone_with_nothing_scanned(market: Market) -> None:
    """A row quota used up by one query, then the same (cached) query 24 times in one batch and once alone:
    every one is refused `row_quota_exhausted` with `needed` 0 and recorded with nothing scanned, as the
    early check refuses it (transaction 1 left that check to transaction 3, the answer being cached)."""
    buyer, slug = _public_buyer(market, monthly_row_quota=ROWS_PER_QUERY)
    assert query(market, buyer, slug, BY_REGION).status_code == 200
    responses = batched(market, CONCURRENT, lambda i: query(market, buyer, slug, BY_REGION))
    responses.append(query(market, buyer, slug, BY_REGION))
    assert {r.status_code for r in responses} == {429}
    errors = [r.json()["error"] for r in responses]
    assert {e["code"] for e in errors} == {"row_quota_exhausted"}
    assert len({e["message"] for e in errors}) == 1, {e["message"] for e in errors}
    refused = [r for r in usage_records(market) if r.charge_type == "rejected"]
    assert len(refused) == CONCURRENT + 1
    assert {(r.rows_scanned, r.bytes_scanned, r.result_rows, r.sql_run) for r in refused} == {(0, 0, 0, "")}
    chains_verify(market, CONCURRENT + 2)
