"""Alert digests, and what /metrics reads of each crash's analysis and capture.

- ``alert_channels.digest``: seconds; a channel with a digest gets one
  message per period carrying the events collected since (0: each event on
  its own, as before);
- ``alert_digest_items``: one row per (channel, event) collected for a
  digest; ``digest_id`` says which digest carried it, so an event is in
  exactly one digest of a channel whoever cuts it and however often senders
  restart;
- ``alert_digests``: a digest cut for a channel, leased and retried like an
  event, its id the receivers' idempotency key;
- ``crashes.analysis_seconds``: how long the crash's analysis took (the
  analysis duration histogram; null for a crash stored from metadata only);
- ``crashes.dropped``: why its full core was not kept, as a bounded reason
  (size, rate, space, policy, other), from the bundle's ``dropped``; filled
  in here for crashes stored before;
- SQLite only: ``groups`` becomes AUTOINCREMENT, so the id of a group that
  ``reprocess`` emptied and removed is never given to another one (its
  alerts, links and its ``new:gN`` key would otherwise name the new group;
  PostgreSQL's sequence never reuses ids anyway).

Revision ID: 0008
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from coretriage.drops import drop_reason

    with op.batch_alter_table("alert_channels") as batch:
        batch.add_column(sa.Column("digest", sa.Float, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("groups", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
    op.create_table(
        "alert_digests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("created", sa.Float, nullable=False),  # when it was cut
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_try", sa.Float, nullable=False),
        sa.Column("lease", sa.Float),  # a sender holds it until then
        sa.Column("done", sa.Float),  # sent, or given up
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_alert_digests_due", "alert_digests", ["done", "next_try"])
    op.create_table(
        "alert_digest_items",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.Integer, primary_key=True),
        sa.Column("queued", sa.Float, nullable=False),
        sa.Column("digest_id", sa.Integer),  # null until a digest takes it
    )
    op.create_index("ix_alert_digest_items_open", "alert_digest_items", ["channel", "digest_id", "queued"])
    with op.batch_alter_table("crashes") as batch:
        batch.add_column(sa.Column("analysis_seconds", sa.Float))
        batch.add_column(sa.Column("dropped", sa.String(16)))
    crashes = sa.table("crashes", sa.column("id", sa.String), sa.column("meta", sa.Text),
                       sa.column("dropped", sa.String))
    db = op.get_bind()
    rows = db.execute(sa.select(crashes.c.id, crashes.c.meta).where(crashes.c.meta.like('%"core_kind"%'))).all()
    for crash_id, text in rows:
        try:
            meta = json.loads(text or "{}")
        except ValueError:
            continue
        reason = drop_reason(meta) if isinstance(meta, dict) else None
        if reason:
            db.execute(crashes.update().where(crashes.c.id == crash_id).values(dropped=reason))


def downgrade() -> None:
    with op.batch_alter_table("crashes") as batch:
        batch.drop_column("dropped")
        batch.drop_column("analysis_seconds")
    op.drop_index("ix_alert_digest_items_open", "alert_digest_items")
    op.drop_table("alert_digest_items")
    op.drop_index("ix_alert_digests_due", "alert_digests")
    op.drop_table("alert_digests")
    with op.batch_alter_table("alert_channels") as batch:
        batch.drop_column("digest")
