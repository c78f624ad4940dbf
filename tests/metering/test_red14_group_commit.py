"""Red team red14 (session 10): group commit's savepoints (metering/group_commit.py) and the access caches.

Each member of a batch runs in a savepoint. SQLAlchemy calls `after_commit` when a SAVEPOINT is released
too, and market.access_cache advanced the access generation there: a member that changed an access-relevant
row (an agreement, a key, an organisation) told every API process to drop its cached keys and agreements
BEFORE the batch's COMMIT. A process that read the database in between (the old row: the change is not
committed) cached it under the new generation, and the real COMMIT then moved nothing: a revoked key or
agreement could be served for up to TTL_SECONDS after the revoking request had been answered. And a later
member's savepoint rollback (a "soft rollback") dropped the change's flag. Latent: the metered path's
members write usage rows only, but nothing stops a write that revokes from being group-committed.
Fixed in market/access_cache.py: only the commit (or rollback) of the whole transaction counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from market import access_cache
from market.accounts.models import Organisation, Role
from market.errors import Conflict
from metering import group_commit
from tests.conftest import Market, running_market


@pytest.fixture
def market(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data", metering_group_commit=True) as running:
        yield running


def test_a_failing_member_does_not_hide_another_members_access_change(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    committer = group_commit.GroupCommit(market.database)
    started, go = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def first(session: Session) -> str:  # written alone; holds the lead while the others queue
        started.set()
        assert go.wait(30)
        return "first"

    def renames(session: Session) -> str:  # an access-relevant change (organisations is watched)
        organisation = session.get(Organisation, buyer.principal.org_id)
        assert organisation is not None
        organisation.name = "renamed in a batch"
        session.flush()
        return "renamed"

    def observes(session: Session) -> Any:  # after the change's savepoint, before the batch's COMMIT
        return access_cache.generation(market.settings.run_dir)

    def fails(session: Session) -> str:
        raise Conflict("idempotency_conflict", key="k")

    def call(name: str, work: Any) -> None:
        try:
            outcomes[name] = committer.run(work)
        except Conflict as error:
            outcomes[name] = error.code

    threads = [threading.Thread(target=call, args=("first", first))]
    threads[0].start()
    assert started.wait(30)
    for name, work in (("renames", renames), ("observes", observes), ("fails", fails)):
        thread = threading.Thread(target=call, args=(name, work))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 30
        while len(committer._pending) < len(threads) - 1:  # queued behind the leader, in this order
            assert time.monotonic() < deadline
            time.sleep(0.005)
    before = access_cache.generation(market.settings.run_dir)
    go.set()
    for thread in threads:
        thread.join(30)
    observed = outcomes.pop("observes")
    assert outcomes == {"first": "first", "renames": "renamed", "fails": "idempotency_conflict"}
    assert committer.stats.largest == 3 and committer.stats.alone_after_batch == 1  # one batch, one rerun
    with market.database.transaction() as session:
        organisation = session.get(Organisation, buyer.principal.org_id)
        assert organisation is not None and organisation.name == "renamed in a batch"
    # Not told before the change was committed (another process would re-read the old row and keep it) ...
    assert observed == before, "the access generation moved before the batch committed"
    # ... and told once it is.
    assert access_cache.generation(market.settings.run_dir) != before
