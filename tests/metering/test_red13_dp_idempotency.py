"""Red team red13 (issue 9, session 9): one Idempotency-Key, two DP queries at once, and the privacy budget.

A DP query reserves its cost (metering.privacy.reserve) before it runs and settles it in its last
transaction, which also takes the buyer's chain lock and looks the Idempotency-Key up again. Two
requests sent at once with the same key and different SQL both pass the first look-up, both reserve and
both run; the first records; the second finds the key taken by another request, `idempotency_conflict`
(409). On main that 409 was raised inside the last transaction, which rolled back the settlement with
everything else: the second query's reservation stayed reserved for good (nothing ever clears it), so
the buyer's budget, and the version's cap that every buyer shares, shrank by a query that was neither
answered nor recorded. The same race on a threshold product held (nothing is reserved there): one
record, one charge, the chains verify.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from metering import chain, privacy
from metering import service as metering_service
from metering.models import PrivacyBudget, UsageRecord
from tests.conftest import DemoMarket, DemoTemplates, _english_client

SLUG = "nyc-flights-2013-dp"
FIRST = "SELECT origin, count(*) AS n FROM flights GROUP BY origin"
SECOND = "SELECT carrier, count(*) AS n FROM flights GROUP BY carrier"


@pytest.fixture
def demo_market(demo_templates: DemoTemplates, tmp_path: Path) -> Iterator[DemoMarket]:
    """The demo, with room for two queries of one organisation in flight (the default is half the workers)."""
    with (
        demo_templates.copy(tmp_path / "data", sandbox_org_concurrency=4) as demo,
        _english_client(demo.settings, demo.database) as client,
    ):
        yield DemoMarket(
            settings=demo.settings, database=demo.database, client=client, keys=demo.keys, logins=demo.logins
        )


def test_a_conflicting_key_gives_its_dp_reservation_back(
    demo_market: DemoMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    both_running = threading.Barrier(2, timeout=60)
    original = privacy.dp_run.run

    def run(*args: Any, **kwargs: Any) -> Any:
        both_running.wait()  # both requests have passed transaction 1 and reserved their cost
        return original(*args, **kwargs)

    monkeypatch.setattr(privacy.dp_run, "run", run)
    headers = {**demo_market.headers("buyer_public"), "Idempotency-Key": "red13-twice"}

    def send(sql: str) -> Any:
        return demo_market.client.post(
            "/v1/queries", headers=headers, json={"product": SLUG, "sql": sql, "epsilon": 0.5}
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(send, [FIRST, SECOND]))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    with demo_market.database.transaction() as session:
        reserved = {b.id: (b.reserved_nano, b.delta_reserved_atto) for b in session.scalars(select(PrivacyBudget))}
    assert all(value == (0, 0) for value in reserved.values()), f"a reservation was never given back: {reserved}"


def test_a_conflicting_key_on_the_threshold_path_is_one_record_and_one_charge(
    demo_market: DemoMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race on a threshold product (group commit on SQLite): the 409 is neither recorded nor charged,
    the winner is recorded once, and the chains verify."""
    both_running = threading.Barrier(2, timeout=60)
    original = metering_service.sandbox_execute

    def execute(*args: Any, **kwargs: Any) -> Any:
        both_running.wait()
        return original(*args, **kwargs)

    monkeypatch.setattr(metering_service, "sandbox_execute", execute)
    headers = {**demo_market.headers("buyer_commercial"), "Idempotency-Key": "red13-threshold"}

    def send(sql: str) -> Any:
        return demo_market.client.post("/v1/queries", headers=headers, json={"product": "nyc-flights-2013", "sql": sql})

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(send, [FIRST, SECOND]))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    with demo_market.database.transaction() as session:
        keyed = list(session.scalars(select(UsageRecord).where(UsageRecord.idempotency_key == "red13-threshold")))
        assert [(r.id, r.amount_minor) for r in keyed] == [(winner["query_id"], winner["charge"]["amount_minor"])]
        report = chain.verify(session)
    assert report.ok, report.breaks
