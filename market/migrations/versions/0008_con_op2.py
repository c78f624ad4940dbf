"""con-op2: background builds with their stage (build_jobs) and resumable uploads (upload_sessions)

Revision ID: 0008_con_op2
Revises: 0007_merge
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import market.db

revision: str = "0008_con_op2"
down_revision: str | Sequence[str] | None = "0007_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "build_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("active", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("table_name", sa.String(length=63), nullable=True),
        sa.Column("rows_done", sa.BigInteger(), nullable=True),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_params", JSON, nullable=True),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_build_jobs_created_by_users")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_build_jobs_org_id_organisations")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_build_jobs_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_build_jobs")),
        sa.UniqueConstraint("active", name=op.f("uq_build_jobs_active")),
    )
    with op.batch_alter_table("build_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_build_jobs_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_build_jobs_product_id"), ["product_id"], unique=False)
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("upload_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_upload_sessions_created_by_users")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_upload_sessions_org_id_organisations")),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], name=op.f("fk_upload_sessions_upload_id_uploads")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_sessions")),
    )
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_sessions_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_table("upload_sessions")
    op.drop_table("build_jobs")
