"""crashes.failure: why a crash's analysis gave no backtrace (a problem code,
e.g. gdb_timeout), for /metrics' coretriage_analysis_failures_total. Crashes
stored before are left unknown (null).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crashes", sa.Column("failure", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("crashes") as batch:  # SQLite rebuilds the table
        batch.drop_column("failure")
