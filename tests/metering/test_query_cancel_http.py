"""Cancelling a running query over HTTP: DuckDB is interrupted in its worker, the sandbox slots are released,
and the attempt is recorded as `rejected` (`query_cancelled`), never charged, visible in usage and audit.

The long query joins two 12,000-row tables on a 2-valued key (72 million joined rows, several seconds of
work); the test cancels it as soon as a worker runs it, and checks what is left, not how long it took.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from market.accounts.models import Role
from metering.service import sandbox_admission, sandbox_limits
from sandbox.pool import shared_pool
from tests.conftest import Market
from tests.factories import JOIN_SQL, JOINED_POLICY, SMALL_SQL, grant, joined_tables, listed_product, query
from tests.metering.helpers import usage
from tests.support.busy_sandbox import market_fixture
from tests.support.waiting import until

ROWS = 12_000
REGIONS = ("north", "south")
LONG = JOIN_SQL
SMALL = SMALL_SQL
POLICY = JOINED_POLICY


def _tables() -> dict[str, bytes]:
    return joined_tables(ROWS, REGIONS)


market = market_fixture(
    sandbox_workers=1,
    sandbox_org_concurrency=1,
    sandbox_queue_size=1,
    sandbox_max_join_fanout=ROWS,  # the long query is long by its fan-out (6,000 per key): allowed here
)


def test_cancel_interrupts_a_running_query_frees_its_slots_and_charges_nothing(market: Market) -> None:
    listed = listed_product(market, "joined", tables=_tables(), policy=POLICY)
    buyer, other = market.actor(Role.BUYER), market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, "joined", SMALL).status_code == 200  # a warm worker, and one billable record
    admission = sandbox_admission(market.settings)
    pool = shared_pool(sandbox_limits(market.settings))

    with ThreadPoolExecutor(1) as background:
        running = background.submit(query, market, buyer, "joined", LONG, "long-one")
        until(lambda: pool.worker_pids(busy=True), "the query reaches a worker")
        busy_pid = pool.worker_pids(busy=True)[0]
        assert admission.held(admission.worker_slots()) == 1
        # Another buyer naming the same key cancels nothing of this buyer's (keys are per organisation).
        foreign = market.client.post("/v1/queries/long-one/cancel", headers=other.headers)
        assert foreign.status_code == 202 and foreign.json()["state"] == "requested"
        assert pool.worker_pids(busy=True) == [busy_pid]
        cancelled = market.client.post("/v1/queries/long-one/cancel", headers=buyer.headers)
        answer = running.result(timeout=120)

    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["state"], body["charge_type"], body["amount_minor"], body["error_code"]) == (
        "cancelled",
        "rejected",
        0,
        "query_cancelled",
    )
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "query_cancelled"
    assert answer.json()["error"]["query_id"] == body["query_id"]

    # The slots are free and the worker was interrupted, not killed: the same process serves the next query.
    assert admission.held(admission.worker_slots()) == 0
    assert admission.held(admission.org_slots(buyer.principal.org_id)) == 0
    assert pool.worker_pids() == [busy_pid]
    cancels = market.settings.run_dir / "sandbox" / "cancel"
    assert sorted(p.name[:4] for p in cancels.iterdir()) == ["stop"]  # only the other buyer's unused request
    after = query(market, buyer, "joined", SMALL)
    assert after.status_code == 200 and after.json()["charge"]["charge_type"] == "billable"

    records = usage(market, buyer)
    assert [(r["charge_type"], r["error_code"]) for r in records] == [
        ("billable", None),
        ("rejected", "query_cancelled"),
        ("billable", None),
    ]
    assert records[1]["amount_minor"] == 0 and records[1]["id"] == body["query_id"]
    audit = market.client.get("/v1/audit/queries", headers=listed.regulator.headers, params={"limit": 500})
    assert any(r["id"] == body["query_id"] and r["error_code"] == "query_cancelled" for r in audit.json()["items"])

    # Cancelling again finds the query finished and changes nothing; the key replays the cancelled outcome.
    again = market.client.post("/v1/queries/long-one/cancel", headers=buyer.headers)
    assert again.status_code == 200 and again.json()["state"] == "finished"
    replay = query(market, buyer, "joined", LONG, "long-one")
    assert replay.status_code == 409 and replay.json()["error"]["query_id"] == body["query_id"]
    assert len(usage(market, buyer)) == 3


def test_a_cancel_that_arrives_before_the_query_starts_stops_it_when_it_does(market: Market) -> None:
    listed = listed_product(market, "joined", tables=_tables(), policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    early = market.client.post("/v1/queries/not-yet/cancel", headers=buyer.headers)
    assert early.status_code == 202 and early.json()["state"] == "requested"
    answer = query(market, buyer, "joined", SMALL, "not-yet")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "query_cancelled"
    record = usage(market, buyer)[0]
    assert (record["charge_type"], record["amount_minor"], record["error_code"]) == ("rejected", 0, "query_cancelled")
    # The request was used up: a query under a new key runs.
    assert query(market, buyer, "joined", SMALL, "next").status_code == 200
