"""The selection delta of noisy-threshold DP queries, over HTTP: each such query spends 0.1 * delta, reserved
and committed with its rho, capped per agreement and per version, refused once short; public keys spend none."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from market.accounts.models import Role
from metering.models import PrivacyBudget, UsageRecord
from tests.conftest import Market
from tests.factories import grant, listed_product
from tests.metering.test_privacy_http import CONCURRENT, DELTA, _buyer, ask, dp_policy, market

__all__ = ["market"]

THRESHOLDED = "SELECT category, count(*) FROM people WHERE month <> {i} GROUP BY category"
"""category has no public keys: its groups pass a noisy threshold (selection delta 0.1 * delta)."""
PUBLIC = "SELECT region, count(*) FROM people WHERE month <> {i} GROUP BY region"
"""region has public keys: no threshold, no selection delta."""
SHARE = DELTA / 10


def _delta_spent(market: Market, scope: str) -> list[tuple[int, int]]:
    with market.database.transaction() as session:
        rows = session.scalars(select(PrivacyBudget).where(PrivacyBudget.id.like(f"{scope}:%"))).all()
        return [(b.delta_spent_atto, b.delta_reserved_atto) for b in rows]


def test_thresholded_queries_spend_delta_until_the_agreements_delta_is_spent(market: Market) -> None:
    listed = listed_product(market, "people-dp", policy=dp_policy(agreement_delta=DELTA * 1.3, query_epsilon=0.1))
    buyer = _buyer(market, listed)
    dry = ask(market, buyer, THRESHOLDED.format(i=0), dry_run=True).json()
    assert dry["privacy"]["cost"]["selection_delta"] == pytest.approx(SHARE)
    assert dry["privacy"]["budget_left"]["delta"] == pytest.approx(3 * SHARE)
    answers = [ask(market, buyer, THRESHOLDED.format(i=i)) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    assert answers[0].json()["usage"]["privacy_delta"] == pytest.approx(SHARE)
    assert answers[-1].json()["privacy"]["budget_left"]["delta"] == pytest.approx(0.0, abs=1e-20)
    # A repeat is free; a public-key query spends no delta; a fourth thresholded query is refused.
    assert ask(market, buyer, THRESHOLDED.format(i=0)).json()["usage"]["privacy_delta"] == 0
    public = ask(market, buyer, PUBLIC.format(i=0))
    assert public.status_code == 200 and public.json()["usage"]["privacy_delta"] == 0
    refused = ask(market, buyer, THRESHOLDED.format(i=3))
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "privacy_delta_exhausted" and "public keys" in error["message"]
    assert _delta_spent(market, "agreement") == [(3 * 10**10, 0)]
    with market.database.transaction() as session:
        last = session.scalars(select(UsageRecord).order_by(UsageRecord.chain_seq.desc())).first()
    assert last is not None and last.charge_type == "rejected" and last.error_code == "privacy_delta_exhausted"
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert sorted(u["privacy_delta_atto"] for u in usage) == [0, 0, 0, 10**10, 10**10, 10**10]
    daily = market.client.get("/v1/usage/summary", headers=buyer.headers).json()["items"]
    assert sum(d["privacy_delta_atto"] for d in daily) == 3 * 10**10
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]
    budget = agreement["privacy_budget"]
    assert budget["total_delta"] == pytest.approx(DELTA * 1.3)
    odrl = market.client.get(f"/v1/agreements/{agreement['id']}/odrl", headers=buyer.headers).json()
    stated = next(c for c in odrl["permission"][0]["constraint"] if c["leftOperand"] == "market:privacyDelta")
    assert stated["rightOperand"] == pytest.approx(DELTA * 1.3) and stated["operator"] == "lteq"
    # Everything the buyer learnt: the epsilon statement's delta plus three selections.
    assert Decimal(str(budget["spent"]["delta"])) == Decimal("1e-7") + 3 * Decimal("1e-8")


def test_the_versions_delta_cap_holds_across_agreements(market: Market) -> None:
    policy = dp_policy(agreement_delta=DELTA * 1.2, version_delta_cap=DELTA * 1.3, query_epsilon=0.1)
    listed = listed_product(market, "people-dp", policy=policy)
    first, second = _buyer(market, listed), market.actor(Role.BUYER)
    grant(market, listed, second, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    assert [ask(market, first, THRESHOLDED.format(i=i)).status_code for i in range(2)] == [200, 200]
    assert ask(market, second, THRESHOLDED.format(i=0)).status_code == 200
    refused = ask(market, second, THRESHOLDED.format(i=1))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "privacy_delta_exhausted"
    assert "version" in refused.json()["error"]["message"]
    assert _delta_spent(market, "version") == [(3 * 10**10, 0)]


def test_a_policy_cannot_give_an_agreement_less_delta_than_its_epsilon_statement(market: Market) -> None:
    from sandbox.policy import ProtectionPolicy

    with pytest.raises(ValueError, match="agreement_delta"):
        ProtectionPolicy.model_validate(dp_policy(agreement_delta=DELTA / 2))
    with pytest.raises(ValueError, match="version_delta_cap"):
        ProtectionPolicy.model_validate(dp_policy(agreement_delta=DELTA * 3, version_delta_cap=DELTA * 2))


def test_concurrent_thresholded_queries_never_overspend_delta(market: Market) -> None:
    """Room for 5 selections, rho for many more: exactly 5 of the concurrent distinct queries are answered."""
    listed = listed_product(market, "people-dp", policy=dp_policy(agreement_delta=DELTA * 1.5, query_epsilon=0.1))
    buyer = _buyer(market, listed)
    count = min(CONCURRENT, 24)
    barrier = threading.Barrier(count)

    def one(i: int) -> Any:
        barrier.wait()
        return ask(market, buyer, THRESHOLDED.format(i=i))

    with ThreadPoolExecutor(max_workers=count) as pool:
        responses = list(pool.map(one, range(count)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 5, 429: count - 5}, statuses
    assert _delta_spent(market, "agreement") == [(5 * 10**10, 0)]
