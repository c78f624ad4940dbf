"""Red team red16m (session 12): a DP query refused at its last transaction takes its locks in the path's order.

A DP query's last transaction (metering.privacy `_record`) locks the agreement's month counter, then the buyer's
chain head, then settles its privacy reservation (the agreement's budget row and the version's, which every
agreement on the version shares). When the agreement was revoked while the query ran, it gave the reservation
back first and only then locked the chain head: budgets before head, the reverse of every other write. With a
second DP query of the same buyer, on another agreement on the same version (a public-interest and a commercial
agreement, say), recording at the same moment, the two transactions deadlocked on PostgreSQL: one was killed
after `deadlock_timeout` and its query answered 503, with no usage record.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from metering import privacy
from metering.models import PrivacyBudget, UsageRecord
from tests.conftest import DemoMarket, DemoTemplates, _english_client

SLUG = "nyc-flights-2013-dp"
SQL = "SELECT origin, count(*) AS n FROM flights GROUP BY origin"


@pytest.fixture
def demo_market(demo_templates: DemoTemplates, tmp_path: Path) -> Iterator[DemoMarket]:
    with (
        demo_templates.copy(tmp_path / "data", sandbox_org_concurrency=4) as demo,
        _english_client(demo.settings, demo.database) as client,
    ):
        yield DemoMarket(
            settings=demo.settings, database=demo.database, client=client, keys=demo.keys, logins=demo.logins
        )


def _second_agreement(demo: DemoMarket) -> tuple[str, str]:
    """The public buyer's public-interest agreement on the DP product, and a commercial one it is granted now."""
    buyer = demo.headers("buyer_public")
    asked = demo.client.post(
        "/v1/access-requests",
        headers=buyer,
        json={
            "product": SLUG,
            "plan": "commercial-standard",
            "purpose": "commercial",
            "scenario": "analysis",
            "justification": "x",
        },
    )
    assert asked.status_code == 201, asked.text
    if asked.json()["status"] == "pending":
        decided = demo.client.post(
            f"/v1/access-requests/{asked.json()['id']}/decision",
            headers=demo.headers("operator"),
            json={"decision": "approve", "reason": "ok"},
        )
        assert decided.status_code == 200, decided.text
    held = demo.client.get("/v1/agreements", headers=buyer).json()["items"]
    on_product = {a["purpose"]: a["id"] for a in held if a["product"] == SLUG and a["status"] == "active"}
    public = next(value for key, value in on_product.items() if key != "commercial")
    return public, on_product["commercial"]


def test_a_dp_query_revoked_while_it_ran_does_not_deadlock_with_the_buyers_other_dp_query(
    demo_market: DemoMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Query 1 (public agreement) runs; its agreement is revoked meanwhile. Query 2 (commercial agreement, same
    buyer, same version) records first and holds the buyer's chain head, about to settle its budgets, when
    query 1's last transaction begins. Before: query 1 then waited for the head, query 2 for the version's budget row: a
    deadlock, one query answered 503 and never recorded. Now query 1 waits for the head before touching any
    budget, and both are answered: 403 `agreement_revoked` (recorded, for 0) and 200."""
    public, commercial = _second_agreement(demo_market)
    headers = demo_market.headers("buyer_public")
    one_ran, two_holds_head, one_settled = threading.Event(), threading.Event(), threading.Event()
    revoked = threading.Event()
    run, settle = privacy.dp_run.run, privacy.settle

    def running(*args: Any, **kwargs: Any) -> Any:
        value = run(*args, **kwargs)
        if not one_ran.is_set():  # the first run is query 1's (query 2 is sent after it)
            one_ran.set()
            assert revoked.wait(60)
            assert two_holds_head.wait(60), "query 2 never reached its settlement"
        return value

    def settling(session: Any, agreement: Any, cost: Any, *, spend: bool) -> None:
        if agreement.id == commercial and spend:  # query 2, its chain head held: let query 1 record now
            two_holds_head.set()
            one_settled.wait(5)  # never set when query 1 waits for the head before its budgets (the fix): go on
        settle(session, agreement, cost, spend=spend)
        if agreement.id == public and not spend:  # query 1, revoked: its reservation given back
            one_settled.set()

    monkeypatch.setattr(privacy.dp_run, "run", running)
    monkeypatch.setattr(privacy, "settle", settling)

    def send(agreement: str) -> Any:
        body = {"product": SLUG, "sql": SQL, "agreement": agreement, "epsilon": 0.5}
        return demo_market.client.post("/v1/queries", headers=headers, json=body)

    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(send, public)
        assert one_ran.wait(60), "query 1 never ran"
        revoke = demo_market.client.post(
            f"/v1/agreements/{public}/revoke", headers=demo_market.headers("regulator"), json={"reason": "breach"}
        )
        assert revoke.status_code == 200, revoke.text
        two = pool.submit(send, commercial)
        revoked.set()
        answers = one.result(timeout=120), two.result(timeout=120)
    assert answers[0].status_code == 403, answers[0].text
    assert answers[0].json()["error"]["code"] == "agreement_revoked"
    assert answers[1].status_code == 200, answers[1].text
    with demo_market.database.transaction() as session:
        codes = sorted(
            (r.agreement_id == public, r.charge_type)
            for r in session.scalars(select(UsageRecord).where(UsageRecord.agreement_id.in_([public, commercial])))
            if r.sql == SQL
        )
        reserved = [(b.reserved_nano, b.delta_reserved_atto) for b in session.scalars(select(PrivacyBudget))]
    assert codes == [(False, "billable"), (True, "rejected")], codes
    assert all(value == (0, 0) for value in reserved), reserved
