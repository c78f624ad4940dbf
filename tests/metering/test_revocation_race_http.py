"""Red team (session 5): a query in flight when its agreement is revoked.

The access cache makes "revoke, then query" refused at once by every process (test_access_cache_http).
This is the other order: the query was admitted (transaction 1 read an active agreement) and waits
for a sandbox worker, or runs, while the agreement is revoked. Before, its answer was still sent and
charged after the revocation had been answered; now transaction 3 reads the agreement again and the
query is refused (`agreement_revoked`, rejected, never charged).
"""

from __future__ import annotations

from typing import Any

from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.factories import dp_policy, grant, listed_product, query
from tests.metering.helpers import BY_REGION, agreement_of, usage
from tests.support.busy_sandbox import ONE_WORKER_QUEUED, market_fixture, queued

market = market_fixture(**ONE_WORKER_QUEUED)


def _revoked_while_queued(
    market: Market, buyer: Actor, slug: str, sql: str, key: str, agreement_id: str, revoker: Actor
) -> Any:
    """Send `sql` while every worker is busy, revoke the agreement once it waits in the queue, free the
    workers, and return its answer."""
    with queued(market, lambda: query(market, buyer, slug, sql, key)) as sent:
        revoked = market.client.post(
            f"/v1/agreements/{agreement_id}/revoke", headers=revoker.headers, json={"reason": "breach"}
        )
        assert revoked.status_code == 200, revoked.text
    return sent.result(timeout=60)


def test_a_query_waiting_for_a_worker_when_its_agreement_is_revoked_is_refused_and_not_charged(
    market: Market,
) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, "SELECT count(*) AS n FROM people").status_code == 200
    agreement = agreement_of(market, buyer)
    answer = _revoked_while_queued(market, buyer, listed.slug, BY_REGION, "in-flight", agreement["id"], listed.operator)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "agreement_revoked"
    assert "rows" not in answer.json()
    (record,) = [r for r in usage(market, buyer) if r.get("idempotency_key") == "in-flight" or r["sql"] == BY_REGION]
    assert (record["charge_type"], record["amount_minor"]) == ("rejected", 0)
    # Its key replays the refusal.
    again = query(market, buyer, listed.slug, BY_REGION, key="in-flight")
    assert again.status_code == 403 and again.json()["error"]["query_id"] == answer.json()["error"]["query_id"]


def test_a_dp_query_running_when_its_agreement_is_revoked_is_refused_and_its_budget_given_back(
    market: Market,
) -> None:
    from tests.metering.test_privacy_http import _spent

    listed = listed_product(market, "people-dp", policy=dp_policy())
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    agreement = agreement_of(market, buyer)
    sql = "SELECT region, count(*) AS n FROM people GROUP BY region"
    answer = _revoked_while_queued(market, buyer, listed.slug, sql, "dp-in-flight", agreement["id"], listed.regulator)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "agreement_revoked"
    assert _spent(market, "agreement") == (0, 0)  # nothing spent, the reservation released
    (record,) = usage(market, buyer)
    assert (record["charge_type"], record["amount_minor"]) == ("rejected", 0)
