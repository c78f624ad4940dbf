"""dp2: the privacy fee under the regulator's caps; the selection delta of thresholded DP queries.

- fee_caps.max_per_tenth_epsilon_minor (0 allows no privacy fee). Existing caps take the highest
  privacy fee a plan of the operator's products in that zone already charges, so no plan that was
  compliant becomes non-compliant by the migration; caps with no such plan get 0.
- fee_standards.max_per_tenth_epsilon_minor (NULL: only the zone's cap limits the privacy fee).
- privacy_budgets.delta_spent_atto / delta_reserved_atto: the delta thresholded queries spent on
  selecting groups, in units of 1e-18 (reserved, committed and refunded like rho). Queries answered
  before this revision are not counted back (their stored answers do not record it reliably).
- usage_records.privacy_delta_atto: that delta per query (hashed into the usage chain when non-zero).

Revision ID: 0008_dp2
Revises: 0007_merge
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_dp2"
down_revision: str | Sequence[str] | None = "0007_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "fee_caps", sa.Column("max_per_tenth_epsilon_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    _cap_existing_privacy_fees()
    op.add_column("fee_standards", sa.Column("max_per_tenth_epsilon_minor", sa.BigInteger(), nullable=True))
    op.add_column("privacy_budgets", sa.Column("delta_spent_atto", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column(
        "privacy_budgets", sa.Column("delta_reserved_atto", sa.BigInteger(), server_default="0", nullable=False)
    )
    # A plain ADD COLUMN (never a batch copy): usage_records keeps its append-only triggers.
    op.add_column("usage_records", sa.Column("privacy_delta_atto", sa.BigInteger(), server_default="0", nullable=False))


def _cap_existing_privacy_fees() -> None:
    """Each existing cap allows the highest privacy fee its operator's plans in the zone already charge."""
    op.execute(
        """
        UPDATE fee_caps SET max_per_tenth_epsilon_minor = COALESCE((
            SELECT max(price_plans.per_tenth_epsilon_minor)
            FROM price_plans
            JOIN products ON products.id = price_plans.product_id
            JOIN authorisations ON authorisations.operator_org_id = products.operator_org_id
            WHERE authorisations.id = fee_caps.authorisation_id AND products.zone = fee_caps.zone
        ), 0)
        """
    )


def downgrade() -> None:
    op.drop_column("usage_records", "privacy_delta_atto")
    with op.batch_alter_table("privacy_budgets") as batch:
        batch.drop_column("delta_reserved_atto")
        batch.drop_column("delta_spent_atto")
    with op.batch_alter_table("fee_standards") as batch:
        batch.drop_column("max_per_tenth_epsilon_minor")
    with op.batch_alter_table("fee_caps") as batch:
        batch.drop_column("max_per_tenth_epsilon_minor")
