"""Migration 0002_metering links usage recorded before the chain existed into valid chains."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import delete, select, text, update

import market
from market.accounts.models import Role
from market.settings import get_settings
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


VERSIONS = Path(market.__file__).parent / "migrations" / "versions"


def _key_existing_chains(running: Market) -> None:
    """Run migration 0004's re-keying of chains hashed before the key, as `market migrate` would."""
    spec = importlib.util.spec_from_file_location("migration_0004", VERSIONS / "0004_money_recon.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.environ["MARKET_DATA_DIR"] = str(running.settings.data_dir)
    get_settings.cache_clear()
    try:
        with running.database.engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
            module._key_existing_chains()
    finally:
        del os.environ["MARKET_DATA_DIR"]
        get_settings.cache_clear()


def _as_before_0002_then_migrated(running: Market) -> None:
    """Put the rows back as they were before 0002_metering (unchained, no heads, no unique position),
    then run that migration's chaining, which hashes them without a key."""
    bypass_append_only(running)
    with running.database.engine.begin() as connection:
        connection.execute(text("DROP INDEX uq_usage_records_buyer_chain_seq"))
        connection.execute(delete(UsageChainHead.__table__))
        connection.execute(update(UsageRecord.__table__).values(chain_seq=0, prev_hash="", record_hash=""))
    with running.database.engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        _migration()._chain_existing_usage()


def test_usage_from_before_the_chain_is_chained_by_the_migration(market: Market) -> None:
    listed = listed_product(market)
    buyers = [market.actor(Role.BUYER), market.actor(Role.BUYER)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="public_welfare", plan="public")
        query(market, buyer, listed.slug, BY_REGION)
        query(market, buyer, listed.slug, "SELECT max(amount) FROM people")
    _as_before_0002_then_migrated(market)
    # Then 0004 re-keys the chains with the key kept outside the database (after checking them).
    _key_existing_chains(market)
    with market.database.transaction() as session:
        report = chain.verify(session)
        assert report.ok and report.chains == 2 and report.records == 4, report.breaks
        assert sorted(session.scalars(select(UsageRecord.chain_seq)).all()) == [1, 1, 2, 2]


def test_rekeying_stops_at_a_legacy_record_that_does_not_verify(market: Market) -> None:
    """A legacy chain edited before the key existed is not laundered by the re-keying: the break stays."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    for _ in range(3):
        query(market, buyer, listed.slug, BY_REGION)
    _as_before_0002_then_migrated(market)
    with market.database.transaction() as session:
        second = session.scalars(select(UsageRecord).where(UsageRecord.chain_seq == 2)).one()
        second.rows_scanned += 1  # edited while the chain was still unkeyed
    _key_existing_chains(market)
    with market.database.transaction() as session:
        report = chain.verify(session)
    assert not report.ok and [b.chain_seq for b in report.breaks] == [2]
