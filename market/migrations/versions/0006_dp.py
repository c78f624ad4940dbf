"""dp: privacy budgets, stored noisy answers, privacy cost on usage and plans, authorisations requiring DP.

Revision ID: 0006_dp
Revises: 0005_merge
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import market.db

revision: str = "0006_dp"
down_revision: str | Sequence[str] | None = "0005_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("product_version_id", sa.String(length=32), nullable=False),
        sa.Column("agreement_id", sa.String(length=32), nullable=True),
        sa.Column("budget_nano", sa.BigInteger(), nullable=False),
        sa.Column("spent_nano", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nano", sa.BigInteger(), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_id"], ["agreements.id"], name=op.f("fk_privacy_budgets_agreement_id_agreements")
        ),
        sa.ForeignKeyConstraint(
            ["product_version_id"],
            ["product_versions.id"],
            name=op.f("fk_privacy_budgets_product_version_id_product_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_budgets")),
    )
    op.create_index(
        op.f("ix_privacy_budgets_product_version_id"), "privacy_budgets", ["product_version_id"], unique=False
    )
    op.create_table(
        "private_answers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("agreement_id", sa.String(length=32), nullable=False),
        sa.Column("query_key", sa.String(length=64), nullable=False),
        sa.Column("columns", JSON, nullable=False),
        sa.Column("rows", JSON, nullable=False),
        sa.Column("privacy", JSON, nullable=False),
        sa.Column("usage_record_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_id"], ["agreements.id"], name=op.f("fk_private_answers_agreement_id_agreements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_private_answers")),
        sa.UniqueConstraint("agreement_id", "query_key", name=op.f("uq_private_answers_agreement_id")),
    )
    # A plain ADD COLUMN (never a batch copy): usage_records keeps its append-only triggers.
    op.add_column("usage_records", sa.Column("privacy_rho_nano", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("price_plans", sa.Column("per_tenth_epsilon_minor", sa.BigInteger(), nullable=True))
    op.add_column("authorisations", sa.Column("dp_required_for", JSON, server_default=sa.text("'[]'"), nullable=False))


def downgrade() -> None:
    op.drop_column("authorisations", "dp_required_for")
    op.drop_column("price_plans", "per_tenth_epsilon_minor")
    op.drop_column("usage_records", "privacy_rho_nano")
    op.drop_table("private_answers")
    op.drop_index(op.f("ix_privacy_budgets_product_version_id"), table_name="privacy_budgets")
    op.drop_table("privacy_budgets")
