"""Merge the i18n, console, compliance and money-recon branches of the schema into one head.

Revision ID: 0005_merge
Revises: 0004_i18n, 0004_console, 0004_compliance, 0004_money_recon
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0005_merge"
down_revision: str | Sequence[str] | None = ("0004_i18n", "0004_console", "0004_compliance", "0004_money_recon")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: this revision only joins the four heads, so later migrations have one parent."""


def downgrade() -> None:
    """Nothing to undo."""
