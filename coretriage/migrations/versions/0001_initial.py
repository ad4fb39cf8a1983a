"""The schema as it was before migrations (coretriage/store.py at 336391d).

The tables are a frozen copy, not the store's current metadata, so this
revision never changes. Creating with checkfirst makes it also the adoption
of a database made before migrations: there it adds only what is missing
(that code created indexes of existing tables lazily), then Alembic records
the revision.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _schema() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "groups", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("signature", sa.Text, nullable=False, unique=True),
        sa.Column("executable", sa.Text),
        sa.Column("signal", sa.String(16)),
        sa.Column("count", sa.Integer, nullable=False, default=0),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("quality", sa.Float, nullable=False, default=0.0),
        sa.Column("state", sa.String(16), nullable=False, default="new"),
        sa.Column("note", sa.Text, nullable=False, default=""),
        sa.Column("key_frame", sa.Text),
        sa.Column("search_text", sa.Text, nullable=False, default=""),
        sa.Index("ix_groups_last_seen", "last_seen"),
        sa.Index("ix_groups_count", "count"),
        sa.Index("ix_groups_first_seen", "first_seen"),
        sa.Index("ix_groups_executable", "executable"),
        sa.Index("ix_groups_signal", "signal"),
    )
    sa.Table(
        "crashes", metadata,
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
        sa.Column("crashed_at", sa.Float, nullable=False),
        sa.Column("ingested_at", sa.Float, nullable=False),
        sa.Column("executable", sa.Text),
        sa.Column("signal", sa.String(16)),
        sa.Column("host", sa.Text),
        sa.Column("container", sa.Text),
        sa.Column("image", sa.Text),
        sa.Column("core_file", sa.Text),
        sa.Column("exe_file", sa.Text),
        sa.Column("sysroot", sa.Text),
        sa.Column("analysis", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False, default="{}"),
        sa.Index("ix_crashes_group", "group_id", "crashed_at"),
        sa.Index("ix_crashes_group_host", "group_id", "host"),
        sa.Index("ix_crashes_group_image", "group_id", "image"),
        sa.Index("ix_crashes_group_container", "group_id", "container"),
        sa.Index("ix_crashes_host", "host", "group_id"),
        sa.Index("ix_crashes_image", "image", "group_id"),
        sa.Index("ix_crashes_container", "container", "group_id"),
    )
    sa.Table(
        "users", metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    sa.Table(
        "api_tokens", metadata,
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    return metadata


def upgrade() -> None:
    bind = op.get_bind()
    schema = _schema()
    schema.create_all(bind, checkfirst=True)
    for table in schema.sorted_tables:  # create_all skips the indexes of existing tables
        for index in table.indexes:
            index.create(bind, checkfirst=True)


def downgrade() -> None:
    _schema().drop_all(op.get_bind())
