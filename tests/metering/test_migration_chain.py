"""Migration 0002_metering links usage recorded before the chain existed into valid chains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import delete, select, text, update

import market
from market.accounts.models import Role
from metering import chain
from metering.models import UsageChainHead, UsageRecord
from tests.conftest import Market
from tests.factories import bypass_append_only, grant, listed_product, query
from tests.metering.helpers import BY_REGION


def _migration():
    path = Path(market.__file__).parent / "migrations" / "versions" / "0002_metering.py"
    spec = importlib.util.spec_from_file_location("migration_0002_metering", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_usage_from_before_the_chain_is_chained_by_the_migration(market: Market) -> None:
    listed = listed_product(market)
    buyers = [market.actor(Role.BUYER), market.actor(Role.BUYER)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="public_welfare", plan="public")
        query(market, buyer, listed.slug, BY_REGION)
        query(market, buyer, listed.slug, "SELECT max(amount) FROM people")
    bypass_append_only(market)
    # Put the rows back as they were before 0002_metering: unchained, no heads, no unique position.
    with market.database.engine.begin() as connection:
        connection.execute(text("DROP INDEX uq_usage_records_buyer_chain_seq"))
        connection.execute(delete(UsageChainHead.__table__))
        connection.execute(update(UsageRecord.__table__).values(chain_seq=0, prev_hash="", record_hash=""))
    with market.database.engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        _migration()._chain_existing_usage()
    with market.database.transaction() as session:
        report = chain.verify(session)
        assert report.ok and report.chains == 2 and report.records == 4, report.breaks
        assert sorted(session.scalars(select(UsageRecord.chain_seq)).all()) == [1, 1, 2, 2]
