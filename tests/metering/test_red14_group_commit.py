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
from sqlalchemy import select
from sqlalchemy.orm import Session

from market import access_cache
from market.accounts.models import Organisation, Role
from market.clock import utcnow
from market.errors import Conflict, MarketError
from metering import attempts, group_commit
from metering.models import Agreement
from tests.conftest import ON_POSTGRES, Market, running_market
from tests.factories import grant, listed_product


@pytest.fixture
def market(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data", metering_group_commit=True) as running:
        yield running


def _one_batch(committer: group_commit.GroupCommit, works: list[tuple[str, Any]]) -> dict[str, Any]:
    """Run `works` (name, work) as ONE batch of `committer`, in this order, behind a leader written alone;
    returns each one's value, or its error's code."""
    started, go = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def first(session: Session) -> str:  # written alone; holds the lead while the others queue
        started.set()
        assert go.wait(30)
        return "first"

    def call(name: str, work: Any) -> None:
        try:
            outcomes[name] = committer.run(work)
        except MarketError as error:
            outcomes[name] = error.code

    threads = [threading.Thread(target=call, args=("first", first))]
    threads[0].start()
    assert started.wait(30)
    for name, work in works:
        thread = threading.Thread(target=call, args=(name, work))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 30
        while len(committer._pending) < len(threads) - 1:  # queued behind the leader, in this order
            assert time.monotonic() < deadline
            time.sleep(0.005)
    go.set()
    for thread in threads:
        thread.join(30)
    assert outcomes.pop("first") == "first"
    assert committer.stats.largest == len(works)  # one batch
    return outcomes


def test_a_failing_member_does_not_hide_another_members_access_change(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    committer = group_commit.GroupCommit(market.database)

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

    before = access_cache.generation(market.settings.run_dir)
    outcomes = _one_batch(committer, [("renames", renames), ("observes", observes), ("fails", fails)])
    observed = outcomes.pop("observes")
    assert outcomes == {"renames": "renamed", "fails": "idempotency_conflict"}
    assert committer.stats.alone_after_batch == 1  # the failing one, rerun alone
    with market.database.transaction() as session:
        organisation = session.get(Organisation, buyer.principal.org_id)
        assert organisation is not None and organisation.name == "renamed in a batch"
    # Not told before the change was committed (another process would re-read the old row and keep it) ...
    assert observed == before, "the access generation moved before the batch committed"
    # ... and told once it is.
    assert access_cache.generation(market.settings.run_dir) != before


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite: a batch holds the writer lock, no revocation commits inside it")
def test_a_member_reads_the_agreement_as_committed_not_as_an_earlier_member_loaded_it(market: Market) -> None:
    """Transaction 3 re-reads the agreement (`session.get`) when the access generation moved, so that no
    answer leaves after its revocation was answered. In a batch every member shares one session, so a member
    after one that loaded the same agreement could get that object from the identity map instead of the row,
    and miss a revocation committed between them (PostgreSQL with `MARKET_METERING_GROUP_COMMIT=1`: the
    batch locks no agreement row). Held: the identity map keeps unmodified objects by weak reference and no
    member keeps its agreement, so the second `get` reads the row again. Fragile (docs/sandbox.md, red14):
    the test fails if the first member keeps a reference to the object it loaded."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    with market.database.transaction() as session:
        (agreement_id,) = session.scalars(select(Agreement.id).where(Agreement.buyer_org_id == buyer.principal.org_id))
    committer = group_commit.GroupCommit(market.database)

    def read(session: Session) -> str:  # as `_record`'s recheck reads it
        found = session.get(Agreement, agreement_id)
        assert found is not None
        refusal = attempts.agreement_refusal(found, utcnow())
        return "refused" if refusal is not None else "served"

    def revoked_elsewhere(session: Session) -> str:  # another request's revocation, committed meanwhile
        with market.database.transaction() as other:
            found = other.get(Agreement, agreement_id)
            assert found is not None
            found.status, found.revoked_reason, found.revoked_at = "revoked", "breach", utcnow()
        return "revoked"

    outcomes = _one_batch(committer, [("before", read), ("revokes", revoked_elsewhere), ("after", read)])
    assert outcomes == {"before": "served", "revokes": "revoked", "after": "refused"}
