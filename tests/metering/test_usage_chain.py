"""The usage log is tamper-evident: `market usage verify` checks every chain and names the first broken record."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from market.accounts.models import Role
from market.cli import app
from market.settings import get_settings
from metering.models import UsageRecord
from tests.conftest import Market
from tests.factories import bypass_append_only, grant, listed_product, query
from tests.metering.helpers import BY_REGION, usage


@pytest.fixture
def verify(market: Market, monkeypatch: pytest.MonkeyPatch):
    """Run `market usage verify --json` against the test's database; returns (exit code, report)."""
    monkeypatch.setenv("MARKET_DATABASE_URL", market.settings.effective_database_url)
    monkeypatch.setenv("MARKET_DATA_DIR", str(market.settings.data_dir))

    def run() -> tuple[int, dict]:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["usage", "verify", "--json"])
        finally:
            get_settings.cache_clear()
        return result.exit_code, json.loads(result.stdout.splitlines()[0])

    return run


def _some_usage(market: Market) -> list[dict]:
    listed = listed_product(market)
    first, second = market.actor(Role.BUYER), market.actor(Role.BUYER)
    grant(market, listed, first, purpose="commercial", plan="standard")
    grant(market, listed, second, purpose="public_welfare", plan="public")
    for sql in (BY_REGION, "SELECT max(amount) FROM people", BY_REGION, BY_REGION):
        query(market, first, listed.slug, sql)
    query(market, second, listed.slug, BY_REGION)
    records = usage(market, first)[::-1]  # oldest first
    bypass_append_only(market)
    return records


def test_the_database_refuses_to_edit_or_delete_usage_records(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    query(market, buyer, listed.slug, BY_REGION)
    for statement in (update(UsageRecord).values(amount_minor=0), delete(UsageRecord)):
        with pytest.raises(DBAPIError, match="append-only"), market.database.transaction() as session:
            session.execute(statement)
    assert usage(market, buyer)[0]["amount_minor"] == 150


def test_an_untouched_log_verifies(market: Market, verify) -> None:
    _some_usage(market)
    code, report = verify()
    assert code == 0 and report == {"ok": True, "chains": 2, "records": 5, "breaks": [], "checkpoints": 0}


def test_editing_an_amount_is_caught_at_that_record(market: Market, verify) -> None:
    records = _some_usage(market)
    tampered = records[2]
    with market.database.transaction() as session:
        session.execute(update(UsageRecord).where(UsageRecord.id == tampered["id"]).values(amount_minor=1))
    code, report = verify()
    assert code == 1 and not report["ok"]
    assert [(b["record_id"], b["chain_seq"]) for b in report["breaks"]] == [(tampered["id"], 3)]
    assert "edited" in report["breaks"][0]["reason"]


def test_rehashing_an_edited_record_without_the_key_is_caught_at_that_record(market: Market, verify) -> None:
    from metering.chain import legacy_hash

    records = _some_usage(market)
    with market.database.transaction() as session:
        row = session.scalars(select(UsageRecord).where(UsageRecord.id == records[1]["id"])).one()
        row.sql = "SELECT 1"
        row.record_hash = legacy_hash(row, row.prev_hash)
    code, report = verify()
    assert code == 1 and report["breaks"][0]["record_id"] == records[1]["id"]
    assert "without the key" in report["breaks"][0]["reason"]


def _rehash_chain(market: Market, buyer_org_id: str, digest) -> None:
    """What an insider with database access does after an edit: recompute every hash of the chain and its head."""
    from metering.chain import GENESIS
    from metering.models import UsageChainHead

    with market.database.transaction() as session:
        prev = GENESIS
        rows = session.scalars(
            select(UsageRecord).where(UsageRecord.buyer_org_id == buyer_org_id).order_by(UsageRecord.chain_seq)
        ).all()
        for row in rows:
            row.prev_hash = prev
            row.record_hash = digest(row, prev)
            prev = row.record_hash
        head = session.get(UsageChainHead, buyer_org_id)
        assert head is not None
        head.last_hash = prev


@pytest.mark.parametrize("attacker_key", [None, b"guessed-key"])
def test_turning_a_billable_record_free_and_rehashing_the_whole_chain_is_caught(
    market: Market, verify, attacker_key: bytes | None
) -> None:
    """Issue 10 item 5: the insider edits a billable record into a free one and re-hashes the chain,
    with the old unkeyed hash or with a key of their own; the real key is not in the database."""
    from metering.chain import legacy_hash, record_hash

    records = _some_usage(market)
    billable = next(r for r in records if r["charge_type"] == "billable" and r["amount_minor"] > 0)
    with market.database.transaction() as session:
        row = session.scalars(select(UsageRecord).where(UsageRecord.id == billable["id"])).one()
        buyer = row.buyer_org_id
        row.charge_type, row.amount_minor = "trial", 0
    _rehash_chain(
        market,
        buyer,
        legacy_hash if attacker_key is None else (lambda r, prev: record_hash(r, prev, attacker_key)),
    )
    code, report = verify()
    assert code == 1 and report["breaks"][0]["record_id"] == records[0]["id"], report


def test_the_key_is_kept_outside_the_database(market: Market, verify) -> None:
    from metering.anchors import chain_key

    _some_usage(market)
    key = chain_key(market.settings)
    assert (market.settings.data_dir / "usage-chain.key").read_bytes().strip() == key
    with market.database.engine.connect() as connection:
        for table in market.database.engine.dialect.get_table_names(connection):
            for row in connection.exec_driver_sql(f'SELECT * FROM "{table}"'):
                assert key.decode() not in repr(tuple(row)), table


def test_truncating_a_chain_behind_a_checkpoint_is_caught(market: Market, verify, monkeypatch) -> None:
    """Deleting the newest records and moving the head back leaves a valid-looking shorter chain; the
    signed checkpoint written before says where the chain had got to."""
    from typer.testing import CliRunner as Runner

    from metering.models import UsageChainHead

    records = _some_usage(market)
    get_settings.cache_clear()
    assert Runner().invoke(app, ["usage", "checkpoint"]).exit_code == 0
    get_settings.cache_clear()
    code, report = verify()
    assert code == 0 and report["checkpoints"] == 1
    with market.database.transaction() as session:
        session.execute(delete(UsageRecord).where(UsageRecord.id == records[-1]["id"]))
        head = session.get(UsageChainHead, records[-1]["buyer_org_id"])
        assert head is not None
        previous = session.scalars(select(UsageRecord).where(UsageRecord.id == records[-2]["id"])).one()
        head.last_seq, head.last_hash = previous.chain_seq, previous.record_hash
    code, report = verify()
    assert code == 1 and [b["chain_seq"] for b in report["breaks"]] == [len(records)]
    assert "truncated" in report["breaks"][0]["reason"]


def test_a_forged_checkpoint_line_is_caught(market: Market, verify) -> None:
    _some_usage(market)
    path = market.settings.data_dir / "usage-anchors.jsonl"
    path.write_text(json.dumps({"at": "2026-01-01T00:00:00", "heads": {}, "mac": "0" * 64}) + "\n")
    code, report = verify()
    assert code == 1 and report["breaks"][0]["record_id"] == "line 1"


def test_deleting_records_is_caught(market: Market, verify) -> None:
    records = _some_usage(market)
    with market.database.transaction() as session:
        session.execute(delete(UsageRecord).where(UsageRecord.id == records[1]["id"]))
    code, report = verify()
    assert code == 1 and report["breaks"][0]["record_id"] == records[2]["id"]

    with market.database.transaction() as session:
        session.execute(delete(UsageRecord).where(UsageRecord.id.in_([r["id"] for r in records[2:]])))
    code, report = verify()
    assert code == 1 and report["breaks"][0]["record_id"] == "(chain head)"


def test_records_written_outside_the_query_path_join_the_chain(market: Market, verify) -> None:
    from market.clock import new_id, utcnow
    from metering.chain import append
    from metering.models import Agreement

    _some_usage(market)
    with market.database.transaction() as session:
        agreement = session.scalars(select(Agreement)).first()
        assert agreement is not None
        last = session.scalars(select(UsageRecord).where(UsageRecord.buyer_org_id == agreement.buyer_org_id)).all()
        record = UsageRecord(
            id=new_id("qry"),
            agreement_id=agreement.id,
            buyer_org_id=agreement.buyer_org_id,
            user_id=last[0].user_id,
            product_id=agreement.product_id,
            product_version_id=agreement.product_version_id,
            purpose=agreement.purpose,
            sql="SELECT 1",
            charge_type="billable",
            amount_minor=5,
            currency=agreement.currency,
            month=utcnow().strftime("%Y-%m"),
            created_at=utcnow(),
        )
        append(session, record)
        assert record.chain_seq == max(r.chain_seq for r in last) + 1
    code, report = verify()
    assert code == 0 and report["records"] == 6
