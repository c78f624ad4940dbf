"""The upkeep job run by several replicas at once changes each state once and notifies each user once."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select

from market import clock
from market.accounts.models import Role
from market.compliance.jobs import run_upkeep
from market.notifications.models import Notification
from tests.conftest import Market
from tests.factories import grant, listed_product


def test_replicas_expire_and_notify_once(market: Market) -> None:
    listed = listed_product(market)
    buyers = [market.actor(Role.BUYER) for _ in range(3)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="commercial", plan="standard", valid_days=1)
    later = clock.utcnow() + timedelta(days=2)
    results: list[dict[str, int]] = []

    def replica() -> None:
        results.append(run_upkeep(market.database, market.settings, later))

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and sum(r["agreements_expired"] for r in results) == 3
    with market.database.transaction() as session:
        kinds = session.execute(
            select(Notification.dedupe_key, func.count()).group_by(Notification.user_id, Notification.dedupe_key)
        ).all()
    assert len(kinds) == 3 and all(count == 1 for _, count in kinds)
    for buyer in buyers:
        agreements = market.client.get("/v1/agreements", headers=buyer.headers).json()
        assert [a["status"] for a in agreements] == ["expired"]
