"""Public-data rules: allowed revenue and carry-forwards, fee standards, registrations with notice
and objections, disclosure reports, and the notification outbox.

Revision ID: 0004_compliance
Revises: 0003_merge
Create Date: 2026-12-02 01:17:43.214055
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import market.db

revision: str = "0004_compliance"
down_revision: str | Sequence[str] | None = "0003_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables of market/compliance and market/notifications; give audit flags a resolution."""
    with op.batch_alter_table("audit_flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved_at", market.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("resolution", sa.Text(), server_default="", nullable=False))
    op.create_table(
        "revenue_carry_forwards",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("operator_org_id", sa.String(length=32), nullable=False),
        sa.Column("from_year", sa.Integer(), nullable=False),
        sa.Column("to_year", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("allowed_minor", sa.BigInteger(), nullable=False),
        sa.Column("received_minor", sa.BigInteger(), nullable=False),
        sa.Column("excess_minor", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_org_id"],
            ["organisations.id"],
            name=op.f("fk_revenue_carry_forwards_operator_org_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revenue_carry_forwards")),
        sa.UniqueConstraint("operator_org_id", "from_year", name=op.f("uq_revenue_carry_forwards_operator_org_id")),
    )
    with op.batch_alter_table("revenue_carry_forwards", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_revenue_carry_forwards_operator_org_id"), ["operator_org_id"], unique=False
        )

    op.create_table(
        "allowed_revenues",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("operator_org_id", sa.String(length=32), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("platform_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("collection_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("processing_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("staff_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("subsidies_minor", sa.BigInteger(), nullable=False),
        sa.Column("profit_minor", sa.BigInteger(), nullable=False),
        sa.Column("taxes_minor", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_org_id"], ["organisations.id"], name=op.f("fk_allowed_revenues_operator_org_id_organisations")
        ),
        sa.ForeignKeyConstraint(["set_by"], ["users.id"], name=op.f("fk_allowed_revenues_set_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowed_revenues")),
        sa.UniqueConstraint("operator_org_id", "year", name=op.f("uq_allowed_revenues_operator_org_id")),
    )
    with op.batch_alter_table("allowed_revenues", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allowed_revenues_operator_org_id"), ["operator_org_id"], unique=False)

    op.create_table(
        "disclosure_reports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column(
            "content", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("generated_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("published_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_disclosure_reports_org_id_organisations")
        ),
        sa.ForeignKeyConstraint(["published_by"], ["users.id"], name=op.f("fk_disclosure_reports_published_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosure_reports")),
        sa.UniqueConstraint("year", "kind", "org_id", name=op.f("uq_disclosure_reports_year")),
    )
    op.create_table(
        "fee_standards",
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("max_per_query_minor", sa.BigInteger(), nullable=False),
        sa.Column("max_per_gb_minor", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("max_monthly_fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("set_by", sa.String(length=32), nullable=False),
        sa.Column("set_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_fee_standards_product_id_products")),
        sa.ForeignKeyConstraint(["set_by"], ["users.id"], name=op.f("fk_fee_standards_set_by_users")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_fee_standards")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("email_to", sa.String(length=320), nullable=False),
        sa.Column("email_status", sa.String(length=10), nullable=False),
        sa.Column("email_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_notifications_org_id_organisations")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "dedupe_key", name=op.f("uq_notifications_user_id")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_email_due", ["email_status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notifications_user_id"), ["user_id"], unique=False)

    op.create_table(
        "registrations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subject_kind", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("owner_org_id", sa.String(length=32), nullable=False),
        sa.Column("registration_code", sa.String(length=64), nullable=False),
        sa.Column("lookup_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("notice_starts_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("notice_ends_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(length=32), nullable=False),
        sa.Column("confirmed_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_org_id"], ["organisations.id"], name=op.f("fk_registrations_owner_org_id_organisations")
        ),
        sa.ForeignKeyConstraint(["registered_by"], ["users.id"], name=op.f("fk_registrations_registered_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("lookup_code", name=op.f("uq_registrations_lookup_code")),
        sa.UniqueConstraint("registration_code", name=op.f("uq_registrations_registration_code")),
        sa.UniqueConstraint("subject_kind", "subject_id", name=op.f("uq_registrations_subject_kind")),
    )
    op.create_table(
        "registration_objections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("registration_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("filed_by", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.String(length=32), nullable=True),
        sa.Column("resolved_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["filed_by"], ["users.id"], name=op.f("fk_registration_objections_filed_by_users")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_registration_objections_org_id_organisations")
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_registration_objections_registration_id_registrations"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["users.id"], name=op.f("fk_registration_objections_resolved_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration_objections")),
    )
    with op.batch_alter_table("registration_objections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_registration_objections_registration_id"), ["registration_id"], unique=False
        )


def downgrade() -> None:
    """Drop what upgrade() created."""
    with op.batch_alter_table("audit_flags", schema=None) as batch_op:
        batch_op.drop_column("resolution")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("resolved_at")
    with op.batch_alter_table("registration_objections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registration_objections_registration_id"))

    op.drop_table("registration_objections")
    op.drop_table("registrations")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_user_id"))
        batch_op.drop_index("ix_notifications_email_due")

    op.drop_table("notifications")
    op.drop_table("fee_standards")
    op.drop_table("disclosure_reports")
    with op.batch_alter_table("allowed_revenues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allowed_revenues_operator_org_id"))

    op.drop_table("allowed_revenues")
    with op.batch_alter_table("revenue_carry_forwards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revenue_carry_forwards_operator_org_id"))

    op.drop_table("revenue_carry_forwards")
