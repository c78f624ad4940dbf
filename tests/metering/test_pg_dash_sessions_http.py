"""A cached answer for a cached buyer begins one database transaction, the record's (branch pg-dash).

Transaction 1 (metering.service._prepare) reads nothing when the buyer's key and agreement and the answer
are all cached: its session used to be made, begun, committed and closed all the same, 0.1-0.3 ms of CPU per
request on this machine (docs/benchmarks.md "pg-dash"). It is now begun at its first read. Counted, never
timed; and the query is still recorded and charged whole.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, usage


def test_a_cached_answer_for_a_cached_buyer_begins_only_the_records_transaction(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for _ in range(3):  # the answer, the key and the agreement are cached from here on
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    begun: list[str] = []

    def count(_session: Any, transaction: Any) -> None:
        if transaction.parent is None:  # not a savepoint
            begun.append(threading.current_thread().name)

    sessions = market.database.sessions
    event.listen(sessions, "after_transaction_create", count)
    try:
        answered = query(market, buyer, listed.slug, BY_REGION)
    finally:
        event.remove(sessions, "after_transaction_create", count)
    assert answered.status_code == 200, answered.text
    # A refresh ahead of the access caches (market.access_cache) may read in its own thread: not the request's.
    on_the_request = [name for name in begun if not name.startswith("access-refresh")]
    assert len(on_the_request) == 1, begun
    records = usage(market, buyer)
    assert len(records) == 4
    assert answered.json()["query_id"] in {r["id"] for r in records}
    assert answered.json()["charge"]["amount_minor"] == records[0]["amount_minor"]


def test_a_first_query_still_reads_its_agreement_in_transaction_one(market: Market) -> None:
    """Nothing cached: transaction 1 reads the product and the agreement (and so is begun), then the record's."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    begun: list[str] = []

    def count(_session: Any, transaction: Any) -> None:
        if transaction.parent is None:
            begun.append(threading.current_thread().name)

    sessions = market.database.sessions
    event.listen(sessions, "after_transaction_create", count)
    try:
        answered = query(market, buyer, listed.slug, BY_REGION)
    finally:
        event.remove(sessions, "after_transaction_create", count)
    assert answered.status_code == 200, answered.text
    assert len([name for name in begun if not name.startswith("access-refresh")]) >= 3, begun  # key, 1, 3
