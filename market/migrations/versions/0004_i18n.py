"""Organisation profiles for invoices: unified social credit code, address, contact and bank details.

Revision ID: 0004_i18n
Revises: 0003_merge
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_i18n"
down_revision: str | Sequence[str] | None = "0003_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("uscc", 18),
    ("address", 500),
    ("contact_name", 200),
    ("contact_phone", 40),
    ("contact_email", 320),
    ("bank_name", 200),
    ("bank_account", 64),
)


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        for name, length in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
