"""crashes.rules_version: the signature rule set each crash was grouped with,
so that crashes grouped by replaced rules can be found. Null for crashes
stored before it was recorded.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crashes", sa.Column("rules_version", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("crashes") as batch:  # SQLite rebuilds the table
        batch.drop_column("rules_version")
