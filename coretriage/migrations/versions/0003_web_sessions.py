"""Web sessions in the database, login throttling, and API tokens that expire.

- ``web_sessions``: one row per logged-in browser, keyed by the SHA-256 of
  the random id its cookie carries, so that logout, a password change and a
  role change can end sessions on the server;
- ``login_failures``: failed logins per user name and per client address
  (keyed by a hash), for the login throttle;
- ``api_tokens.expires`` and ``api_tokens.last_used``. Tokens made before
  this revision had no expiry: they get one 90 days from the upgrade, so
  nothing breaks at once and nothing lives for ever.

Revision ID: 0003
Revises: 0002
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEGACY_TOKEN_GRACE = 90 * 86400


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),  # sha256 of the cookie's id
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),  # flashed messages
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user"])
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(64), primary_key=True),  # sha256 of "user\0NAME" or "addr\0IP"
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first", sa.Float, nullable=False),
    )
    op.add_column("api_tokens", sa.Column("expires", sa.Float))
    op.add_column("api_tokens", sa.Column("last_used", sa.Float))
    tokens = sa.table("api_tokens", sa.column("expires", sa.Float))
    op.execute(tokens.update().values(expires=time.time() + LEGACY_TOKEN_GRACE))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:  # SQLite rebuilds the table
        batch.drop_column("last_used")
        batch.drop_column("expires")
    op.drop_table("login_failures")
    op.drop_table("web_sessions")
