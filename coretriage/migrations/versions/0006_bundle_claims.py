"""Exactly-once analysis of spool bundles.

- ``crashes.bundle_id``: the spool bundle a crash was stored from, unique
  (null for cores ingested by hand), so a bundle processed again (a queue
  message delivered twice, a re-submit, a worker killed after storing) never
  makes a second record, even once its core has moved to the store;
- ``bundle_claims``: a worker analyzing a bundle holds its claim row and
  renews it while it works, so workers on machines that share the database
  but not a lock on the bundle's directory do not analyze one bundle twice;
  the claim of a worker that died runs out within its short lease.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crashes", sa.Column("bundle_id", sa.String(64)))
    op.create_index("ux_crashes_bundle", "crashes", ["bundle_id"], unique=True)
    op.create_table(
        "bundle_claims",
        sa.Column("bundle_id", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),  # host:pid:random of the worker
        sa.Column("expires", sa.Float, nullable=False),  # renewed while the analysis runs
    )


def downgrade() -> None:
    op.drop_table("bundle_claims")
    op.drop_index("ux_crashes_bundle", "crashes")
    with op.batch_alter_table("crashes") as batch:  # SQLite rebuilds the table
        batch.drop_column("bundle_id")
