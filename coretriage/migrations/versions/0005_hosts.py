"""Hosts that upload their crashes to this central coretriage.

- ``hosts``: one row per registered host (``coretriage host add NAME``):
  the SHA-256 of its token (never the token), when it was made and revoked,
  and its last heartbeat with the report it carried (JSON) and the time of
  its last crash.

Revision ID: 0005
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 of the host token
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),  # refused from then on
        sa.Column("last_heartbeat", sa.Float),
        sa.Column("report", sa.Text),  # the last heartbeat's report, JSON
        sa.Column("last_crash_at", sa.Float),  # the newest crash it uploaded or reported
    )


def downgrade() -> None:
    op.drop_table("hosts")
