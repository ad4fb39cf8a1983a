"""Alerts: notification channels, an outbox of alert events, and their deliveries.

- ``alert_channels``: where alerts go (a webhook URL or an email address),
  with the event kinds and executable/host/image globs each one wants, and
  its quiet period (after an alert of a group, none of that group for so long);
- ``alert_events``: the outbox. An event is written in the transaction that
  stores its crash, so a worker killed in between loses nothing and repeats
  nothing; ``dedup`` is unique (``new:g5``: one ``new`` per group, ever);
- ``alert_deliveries``: one row per (event, channel) sent, so a sender that
  restarts does not send to a channel again what it already took.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_channels",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),  # webhook | email
        sa.Column("target", sa.Text, nullable=False),  # the URL or the address
        sa.Column("secret", sa.Text),  # HMAC key of a webhook's signature header
        sa.Column("events", sa.String(64), nullable=False),  # "new,regression,spike"
        sa.Column("executable", sa.Text),  # globs; null matches anything
        sa.Column("host", sa.Text),
        sa.Column("image", sa.Text),
        sa.Column("quiet", sa.Float, nullable=False, server_default="0"),  # seconds between alerts of a group
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),  # new | regression | spike
        sa.Column("dedup", sa.String(80), nullable=False, unique=True),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("crash_id", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),  # the crash's time
        sa.Column("until", sa.Float),  # a spike goes on until then (each spiking crash extends it)
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_try", sa.Float, nullable=False),
        sa.Column("lease", sa.Float),  # a sender holds the event until then
        sa.Column("done", sa.Float),  # sent to every channel, or given up
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_alert_events_due", "alert_events", ["done", "next_try"])
    op.create_index("ix_alert_events_group", "alert_events", ["group_id", "kind", "until"])
    op.create_table(
        "alert_deliveries",
        sa.Column("event_id", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("sent", sa.Float, nullable=False),
        sa.Column("skipped", sa.Boolean, nullable=False, server_default=sa.false()),  # in a quiet period
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_events_group", "alert_events")
    op.drop_index("ix_alert_events_due", "alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_channels")
