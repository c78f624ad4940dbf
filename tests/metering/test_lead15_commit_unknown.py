"""A group-commit batch whose COMMIT fails with an unknown outcome (red15's open finding, fixed by the lead).

When the connection is lost during COMMIT, the batch may have been written. metering/group_commit.py ran
every member again on its own after any failure of the batch, so a batch that had in fact committed was
written twice: a query without an Idempotency-Key recorded and charged twice. A failure at COMMIT now fails
each member, as a write of its own fails when its COMMIT does; a failure before COMMIT (nothing written)
still runs each member again alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, Role
from metering import group_commit
from tests.conftest import Market, running_market
from tests.metering.test_red14_group_commit import _one_batch


@pytest.fixture
def market(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data", metering_group_commit=True) as running:
        yield running


def _appends(org_id: int, mark: str) -> Any:
    def work(session: Session) -> str:
        organisation = session.get(Organisation, org_id)
        assert organisation is not None
        organisation.name = organisation.name + mark
        session.flush()
        return mark

    return work


def _name(market: Market, org_id: int) -> str:
    with market.database.transaction() as session:
        organisation = session.get(Organisation, org_id)
        assert organisation is not None
        return organisation.name


# Each member's caller gets the OperationalError; _one_batch's threads record only MarketErrors, so it is
# raised in those threads, and `outcomes == {}` below is how the test sees it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_batch_whose_commit_fails_after_writing_is_not_written_again(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    org_id = buyer.principal.org_id
    before = _name(market, org_id)
    committer = group_commit.GroupCommit(market.database)
    commits: list[int] = []

    def lost_acknowledgement(session: Session) -> None:
        # The batch's COMMIT reached the database, then the connection was lost before the client heard.
        if session.in_nested_transaction():  # a member's SAVEPOINT released, not a COMMIT
            return
        commits.append(1)
        if len(commits) == 2:  # the leader's own write first, then the batch's
            raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection unexpectedly"))

    event.listen(market.database.sessions, "after_commit", lost_acknowledgement)
    try:
        outcomes = _one_batch(committer, [("a", _appends(org_id, "+a")), ("b", _appends(org_id, "+b"))])
    finally:
        event.remove(market.database.sessions, "after_commit", lost_acknowledgement)
    assert outcomes == {}  # both members failed (their callers got the error, as a lone COMMIT's would)
    assert committer.stats.failed_batches == 1
    assert _name(market, org_id) == before + "+a+b", "the members were written again after their batch committed"


def test_a_batch_that_fails_before_its_commit_runs_each_member_again(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    org_id = buyer.principal.org_id
    before = _name(market, org_id)
    committer = group_commit.GroupCommit(market.database)
    flushes: list[int] = []

    def lost_before_commit(session: Session, context: Any) -> None:
        flushes.append(1)
        if len(flushes) == 2:  # the batch's last flush: nothing committed
            raise OperationalError("UPDATE", {}, ConnectionError("server closed the connection unexpectedly"))

    original = group_commit.flush

    def failing_flush(session: Session) -> None:
        original(session)
        if session.info.get(group_commit._PREFETCHED) is not None:
            lost_before_commit(session, None)

    group_commit.flush = failing_flush  # type: ignore[assignment]
    try:
        outcomes = _one_batch(committer, [("a", _appends(org_id, "+a")), ("b", _appends(org_id, "+b"))])
    finally:
        group_commit.flush = original  # type: ignore[assignment]
    assert outcomes == {"a": "+a", "b": "+b"}
    assert committer.stats.failed_batches == 1
    assert _name(market, org_id) == before + "+a+b"
