"""money-recon: mismatch acknowledgements, the per-GB rounding carry, and keyed usage chains.

Revision ID: 0004_money_recon
Revises: 0003_merge
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import market.db

revision: str = "0004_money_recon"
down_revision: str | Sequence[str] | None = "0003_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "usage_records is append-only: corrections are new records, never edits"


def upgrade() -> None:
    op.create_table(
        "mismatch_acknowledgements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("mismatch_key", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("objects", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=32), nullable=False),
        sa.Column("acknowledged_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mismatch_acknowledgements")),
        sa.UniqueConstraint("period", "mismatch_key", name=op.f("uq_mismatch_acknowledgements_period")),
    )
    with op.batch_alter_table("mismatch_acknowledgements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mismatch_acknowledgements_period"), ["period"], unique=False)
    with op.batch_alter_table("agreement_months", schema=None) as batch_op:
        batch_op.add_column(sa.Column("per_gb_carry", sa.String(length=60), server_default="0", nullable=False))
    _key_existing_chains()


def _key_existing_chains() -> None:
    """Re-hash every chain written before the key existed with the key (HMAC), after checking each record
    under the old unkeyed hash. A chain is re-keyed only up to its first record that does not verify:
    the rest keeps its old hashes, so `market usage verify` still reports the break there."""
    from metering.anchors import chain_key
    from metering.chain import GENESIS, HASHED_FIELDS, legacy_hash, record_hash

    bind = op.get_bind()
    if not bind.execute(sa.text("SELECT 1 FROM usage_records WHERE record_hash <> '' LIMIT 1")).first():
        return  # nothing to re-key (a new database): the key is not even needed yet
    key = chain_key(_settings())
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    typed = ("created_at", "finished_at", "result_columns", "chain_seq")
    usage = sa.table(
        "usage_records",
        *[sa.column(name) for name in HASHED_FIELDS if name not in typed],
        sa.column("created_at", market.db.UTCDateTime(timezone=True)),
        sa.column("finished_at", market.db.UTCDateTime(timezone=True)),
        sa.column("result_columns", json_type),
        sa.column("chain_seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("record_hash", sa.String()),
    )
    heads = sa.table("usage_chain_heads", sa.column("buyer_org_id"), sa.column("last_seq"), sa.column("last_hash"))
    _allow_changes_to_usage()
    rows = bind.execute(sa.select(usage).order_by(usage.c.buyer_org_id, usage.c.chain_seq)).mappings()
    state: dict[str, tuple[int, str, str, bool]] = {}  # buyer -> (seq, old hash, new hash, still intact)
    for row in list(rows):
        buyer = row["buyer_org_id"]
        seq, old_prev, new_prev, intact = state.get(buyer, (0, GENESIS, GENESIS, True))
        record = SimpleNamespace(**row)
        intact = (
            intact
            and row["chain_seq"] == seq + 1
            and row["prev_hash"] == old_prev
            and row["record_hash"] == legacy_hash(record, old_prev)
        )
        if not intact:
            state[buyer] = (seq + 1, row["record_hash"], row["record_hash"], False)
            continue
        digest = record_hash(record, new_prev, key)
        bind.execute(usage.update().where(usage.c.id == row["id"]).values(prev_hash=new_prev, record_hash=digest))
        state[buyer] = (seq + 1, row["record_hash"], digest, True)
    for buyer, (seq, old, new, intact) in state.items():
        if intact:
            bind.execute(
                heads.update()
                .where(heads.c.buyer_org_id == buyer, heads.c.last_seq == seq, heads.c.last_hash == old)
                .values(last_hash=new)
            )
    _forbid_changes_to_usage()


def _settings() -> Any:
    """The settings of the database being migrated (`market.db.migrate` passes them), else the environment's."""
    from alembic import context

    from market.settings import get_settings

    try:
        given = context.config.attributes.get("settings")
    except (AttributeError, NameError):  # run outside an Alembic environment (tests call the step directly)
        given = None
    return given or get_settings()


def _forbid_changes_to_usage() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE usage_records ENABLE TRIGGER usage_records_append_only")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS usage_records_no_{event.lower()} BEFORE {event} ON usage_records "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def _allow_changes_to_usage() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE usage_records DISABLE TRIGGER usage_records_append_only")
    else:
        op.execute("DROP TRIGGER IF EXISTS usage_records_no_update")
        op.execute("DROP TRIGGER IF EXISTS usage_records_no_delete")


def downgrade() -> None:
    with op.batch_alter_table("agreement_months", schema=None) as batch_op:
        batch_op.drop_column("per_gb_carry")
    with op.batch_alter_table("mismatch_acknowledgements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mismatch_acknowledgements_period"))
    op.drop_table("mismatch_acknowledgements")
