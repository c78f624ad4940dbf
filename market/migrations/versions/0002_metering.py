"""metering: agreements, quotas, hash-chained usage, audit

Revision ID: 0002_metering
Revises: 0001
Create Date: 2026-11-26 08:02:32.320600
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import market.db

revision: str = "0002_metering"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_chain_heads",
        sa.Column("buyer_org_id", sa.String(length=32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_org_id"], ["organisations.id"], name=op.f("fk_usage_chain_heads_buyer_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("buyer_org_id", name=op.f("pk_usage_chain_heads")),
    )
    op.create_table(
        "product_access_settings",
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("auto_approve_commercial", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=False),
        sa.Column("updated_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_product_access_settings_product_id_products")
        ),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_product_access_settings_updated_by_users")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_product_access_settings")),
    )
    op.create_table(
        "audit_flags",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("usage_record_id", sa.String(length=32), nullable=False),
        sa.Column("flagged_by", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["flagged_by"], ["users.id"], name=op.f("fk_audit_flags_flagged_by_users")),
        sa.ForeignKeyConstraint(
            ["usage_record_id"], ["usage_records.id"], name=op.f("fk_audit_flags_usage_record_id_usage_records")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_flags")),
    )
    with op.batch_alter_table("audit_flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_flags_usage_record_id"), ["usage_record_id"], unique=False)

    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_due_at", market.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table("agreement_months", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rows_scanned", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("bytes_scanned", sa.BigInteger(), server_default="0", nullable=False))

    with op.batch_alter_table("agreements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("monthly_row_quota", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("monthly_byte_quota", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", market.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("revoked_by_role", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("product_version_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("zone", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("region", sa.String(length=20), nullable=True))

    with op.batch_alter_table("price_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("monthly_row_quota", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("monthly_byte_quota", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "tiers", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
            )
        )

    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finished_at", market.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), server_default="", nullable=False))
        batch_op.add_column(sa.Column("record_hash", sa.String(length=64), server_default="", nullable=False))
        batch_op.create_index("ix_usage_records_product_created", ["product_id", "created_at"], unique=False)
        batch_op.create_index("ix_usage_records_created", ["created_at"], unique=False)

    _chain_existing_usage()

    op.create_index("uq_usage_records_buyer_chain_seq", "usage_records", ["buyer_org_id", "chain_seq"], unique=True)
    _forbid_changes_to_usage()


APPEND_ONLY_MESSAGE = "usage_records is append-only: corrections are new records, never edits"


def _forbid_changes_to_usage() -> None:
    """Refuse UPDATE and DELETE on usage_records in the database itself (the hash chain detects the rest)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION usage_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE} (% refused)', TG_OP; END $$"
        )
        op.execute(
            "CREATE TRIGGER usage_records_append_only BEFORE UPDATE OR DELETE ON usage_records "
            "FOR EACH ROW EXECUTE FUNCTION usage_records_append_only()"
        )
        op.execute(
            "CREATE TRIGGER usage_records_no_truncate BEFORE TRUNCATE ON usage_records "
            "FOR EACH STATEMENT EXECUTE FUNCTION usage_records_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER usage_records_no_{event.lower()} BEFORE {event} ON usage_records "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def _allow_changes_to_usage() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS usage_records_no_truncate ON usage_records")
        op.execute("DROP TRIGGER IF EXISTS usage_records_append_only ON usage_records")
        op.execute("DROP FUNCTION IF EXISTS usage_records_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS usage_records_no_update")
        op.execute("DROP TRIGGER IF EXISTS usage_records_no_delete")


def _chain_existing_usage() -> None:
    """Link usage records written before the chain existed, per buyer in (created_at, id) order."""
    from types import SimpleNamespace

    from metering.chain import GENESIS, HASHED_FIELDS, legacy_hash

    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    typed = ("created_at", "finished_at", "result_columns", "chain_seq")
    columns = [sa.column(name) for name in HASHED_FIELDS if name not in typed]
    usage = sa.table(
        "usage_records",
        *columns,
        sa.column("created_at", market.db.UTCDateTime(timezone=True)),
        sa.column("finished_at", market.db.UTCDateTime(timezone=True)),
        sa.column("result_columns", json_type),
        sa.column("chain_seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("record_hash", sa.String()),
    )
    heads = sa.table("usage_chain_heads", sa.column("buyer_org_id"), sa.column("last_seq"), sa.column("last_hash"))
    bind = op.get_bind()
    rows = bind.execute(sa.select(usage).order_by(usage.c.buyer_org_id, usage.c.created_at, usage.c.id)).mappings()
    last: dict[str, tuple[int, str]] = {}
    for row in list(rows):
        seq, prev = last.get(row["buyer_org_id"], (0, GENESIS))
        record = SimpleNamespace(**{**row, "chain_seq": seq + 1})
        digest = legacy_hash(record, prev)
        bind.execute(
            usage.update().where(usage.c.id == row["id"]).values(chain_seq=seq + 1, prev_hash=prev, record_hash=digest)
        )
        last[row["buyer_org_id"]] = (seq + 1, digest)
    for buyer, (seq, digest) in last.items():
        bind.execute(heads.insert().values(buyer_org_id=buyer, last_seq=seq, last_hash=digest))


def downgrade() -> None:
    # Columns are dropped in place (SQLite >= 3.35 supports it): recreating tables that other
    # tables reference would fail on SQLite with foreign keys on.
    _allow_changes_to_usage()
    op.drop_index("uq_usage_records_buyer_chain_seq", table_name="usage_records")
    op.drop_index("ix_usage_records_product_created", table_name="usage_records")
    op.drop_index("ix_usage_records_created", table_name="usage_records")
    with op.batch_alter_table("usage_records", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("record_hash")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")

    with op.batch_alter_table("price_plans", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("tiers")
        batch_op.drop_column("monthly_byte_quota")
        batch_op.drop_column("monthly_row_quota")

    with op.batch_alter_table("agreements", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("region")
        batch_op.drop_column("zone")
        batch_op.drop_column("product_version_number")
        batch_op.drop_column("revoked_by_role")
        batch_op.drop_column("revoked_by")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("monthly_byte_quota")
        batch_op.drop_column("monthly_row_quota")

    with op.batch_alter_table("agreement_months", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("bytes_scanned")
        batch_op.drop_column("rows_scanned")

    with op.batch_alter_table("access_requests", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("review_due_at")

    with op.batch_alter_table("audit_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_flags_usage_record_id"))

    op.drop_table("audit_flags")
    op.drop_table("product_access_settings")
    op.drop_table("usage_chain_heads")
