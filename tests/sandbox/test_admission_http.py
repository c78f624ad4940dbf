"""Admission to the sandbox over HTTP: 429 past the organisation's limit, 503 when the queue is full or
slow, both with Retry-After, recorded as `rejected` and never charged; and no database connection held
while a query waits for a worker.

Slots are taken here with `Admission.occupy`, exactly as other API processes' queries take them (the
same lock files), so the tests decide which slots are busy without racing real queries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from market.accounts.models import Role
from market.app import create_app
from market.db import Database, make_engine
from market.settings import Settings
from metering.service import sandbox_admission
from tests.conftest import Actor, Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, usage
from tests.support.busy_sandbox import every_worker_taken, market_fixture, queued

LIMITS: dict[str, Any] = {
    "sandbox_workers": 1,
    "sandbox_org_concurrency": 1,
    "sandbox_queue_size": 1,
    "sandbox_queue_timeout_seconds": 0.3,
}


market = market_fixture(**LIMITS)


def _commercial_buyer(market: Market, slug: str = "people-trips") -> Actor:
    listed = listed_product(market, slug)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    return buyer


def _assert_overload(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert int(response.headers["Retry-After"]) >= 1


def _only_record(market: Market, buyer: Actor) -> dict[str, Any]:
    records = usage(market, buyer)
    assert len(records) == 1, records
    return records[0]


def test_past_the_organisations_limit_a_query_gets_429_is_recorded_free_and_a_retry_with_its_key_runs(
    market: Market,
) -> None:
    buyer = _commercial_buyer(market)
    admission = sandbox_admission(market.settings)
    with admission.occupy(admission.org_slots(buyer.principal.org_id)):
        refused = query(market, buyer, "people-trips", BY_REGION, key="retry-me")
    _assert_overload(refused, 429, "too_many_queries")
    record = _only_record(market, buyer)
    assert (record["charge_type"], record["amount_minor"], record["error_code"]) == ("rejected", 0, "too_many_queries")

    # The refusal was transient: the same Idempotency-Key now runs the query, and is then replayed.
    answered = query(market, buyer, "people-trips", BY_REGION, key="retry-me")
    assert answered.status_code == 200, answered.text
    assert answered.json()["charge"]["charge_type"] == "billable"
    again = query(market, buyer, "people-trips", BY_REGION, key="retry-me")
    assert again.json()["query_id"] == answered.json()["query_id"]
    assert len(usage(market, buyer)) == 2


def test_another_organisations_slots_do_not_count_against_a_buyer(market: Market) -> None:
    buyer = _commercial_buyer(market)
    admission = sandbox_admission(market.settings)
    with admission.occupy(admission.org_slots("some-other-org")):
        assert query(market, buyer, "people-trips", BY_REGION).status_code == 200


def test_with_every_worker_and_the_whole_queue_busy_a_query_gets_503_at_once(market: Market) -> None:
    buyer = _commercial_buyer(market)
    admission = sandbox_admission(market.settings)
    with admission.occupy(admission.worker_slots() + admission.queue_slots()):
        refused = query(market, buyer, "people-trips", BY_REGION)
    _assert_overload(refused, 503, "sandbox_busy")
    record = _only_record(market, buyer)
    assert (record["charge_type"], record["amount_minor"], record["error_code"]) == ("rejected", 0, "sandbox_busy")


def test_a_query_that_waits_longer_than_the_queue_timeout_gets_503(market: Market) -> None:
    buyer = _commercial_buyer(market)
    with every_worker_taken(market) as admission:
        refused = query(market, buyer, "people-trips", BY_REGION)
        assert admission.held(admission.queue_slots()) == 0  # it left the queue when it gave up
    _assert_overload(refused, 503, "sandbox_busy")
    assert _only_record(market, buyer)["charge_type"] == "rejected"


def test_a_refused_query_takes_no_slot(market: Market) -> None:
    """Validation comes before admission: a refusal is a 4xx with its own code even when all is busy."""
    buyer = _commercial_buyer(market)
    admission = sandbox_admission(market.settings)
    with admission.occupy(admission.worker_slots() + admission.queue_slots()):
        refused = query(market, buyer, "people-trips", "SELECT max(amount) FROM people")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "disallowed_aggregate"


@contextmanager
def _market_with_one_connection(database_factory: Any, data_dir: Path) -> Iterator[Market]:
    """A marketplace whose request pool has exactly one connection, and no overflow."""
    url = database_factory.new_database()
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        scheduler_enabled=False,
        **{**LIMITS, "sandbox_queue_timeout_seconds": 60.0},
    )
    engine = make_engine(url, pool_size=1, max_overflow=0, pool_timeout=3)
    database = Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
    with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        yield Market(settings=settings, database=database, client=client)
    database.dispose()
    database_factory.release(url)


def test_a_query_waiting_for_a_worker_holds_no_pooled_connection(database_factory: Any, tmp_path: Path) -> None:
    """With a pool of one connection, other requests are served while a query waits in the queue."""
    with _market_with_one_connection(database_factory, tmp_path / "data") as market:
        buyer = _commercial_buyer(market)
        other = market.actor(Role.BUYER)
        admission = sandbox_admission(market.settings)
        with queued(market, lambda: query(market, buyer, "people-trips", BY_REGION)) as waiting:
            assert admission.held(admission.queue_slots()) == 1
            assert market.database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            assert market.client.get("/v1/products", headers=other.headers).status_code == 200
            assert market.client.get("/v1/usage", headers=buyer.headers).json()["items"] == []
            assert market.client.get("/healthz").status_code == 200
        answered = waiting.result(timeout=120)
        assert answered.status_code == 200, answered.text
        records = usage(market, buyer)
        assert [r["id"] for r in records] == [answered.json()["query_id"]]


def test_a_waiter_leaving_as_a_query_rings_the_doorbell_does_not_fail_that_query(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter may close its doorbell between the ringer's open and its write (a broken pipe): the
    query that rang has run, so it still gets its answer (this was a 500 under load); the waiter still
    finds the freed worker (at its next wake-up)."""
    import dataclasses
    import threading

    import metering.service as service_module
    import sandbox.admission as admission_module

    buyer = _commercial_buyer(market)
    admission = sandbox_admission(market.settings)
    patient = dataclasses.replace(admission, queue_timeout=30.0)
    served = threading.Event()

    def wait_for_a_worker() -> None:
        with patient.worker("another organisation"):
            served.set()

    waiter = threading.Thread(target=wait_for_a_worker, daemon=True)
    execute = service_module.sandbox_execute

    def execute_with_a_waiter(*args: Any, **kwargs: Any) -> Any:
        waiter.start()  # the query holds the only worker: the waiter queues behind it
        deadline = time.monotonic() + 10
        while not admission.held(admission.queue_slots()):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        return execute(*args, **kwargs)

    def write_to_a_closed_pipe(fd: int, data: bytes) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(service_module, "sandbox_execute", execute_with_a_waiter)
    monkeypatch.setattr(admission_module.os, "write", write_to_a_closed_pipe)
    answered = query(market, buyer, "people-trips", BY_REGION)
    assert answered.status_code == 200, answered.text
    assert _only_record(market, buyer)["charge_type"] == "billable"
    assert served.wait(10)
    waiter.join(10)
