"""groups.renamed_from, groups.renamed_at: when symbols arrived for a group's
crashes (``coretriage symbols add``, a debuginfod fetch, an unstripped build
captured) and the re-analysis renamed it, its signature before and when.

Revision ID: 0009
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("groups", sa.Column("renamed_from", sa.Text))
    op.add_column("groups", sa.Column("renamed_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("groups") as batch:  # SQLite rebuilds the table
        batch.drop_column("renamed_at")
        batch.drop_column("renamed_from")
