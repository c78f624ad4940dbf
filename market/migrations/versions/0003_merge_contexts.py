"""Merge the products, metering and billing branches of the schema into one head.

Revision ID: 0003_merge
Revises: 0002_products, 0002_metering, 0002_billing
Create Date: 2026-11-26
"""

from collections.abc import Sequence

revision: str = "0003_merge"
down_revision: str | Sequence[str] | None = ("0002_products", "0002_metering", "0002_billing")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: this revision only joins the three heads, so later migrations have one parent."""


def downgrade() -> None:
    """Nothing to undo."""
