"""Merge the operator build-jobs and DP fee-cap/delta branches of the schema into one head.

Revision ID: 0009_merge
Revises: 0008_con_op2, 0008_dp2
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0009_merge"
down_revision: str | Sequence[str] | None = ("0008_con_op2", "0008_dp2")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: this revision only joins the two heads, so later migrations have one parent."""


def downgrade() -> None:
    """Nothing to undo."""
