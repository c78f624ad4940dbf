"""Merge the finance-console and differential-privacy branches of the schema into one head.

Revision ID: 0007_merge
Revises: 0006_con_fin, 0006_dp
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0007_merge"
down_revision: str | Sequence[str] | None = ("0006_con_fin", "0006_dp")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: this revision only joins the two heads, so later migrations have one parent."""


def downgrade() -> None:
    """Nothing to undo."""
