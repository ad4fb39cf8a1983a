"""The web UI at fleet scale: a trigram index for the group search, and
per-group counts kept as crashes are stored.

- PostgreSQL only: the ``pg_trgm`` extension and a GIN trigram index on
  ``groups.search_text``, which serves the search's ``ILIKE '%word%'`` as it
  is (same matches, no full scan of the groups). SQLite gets nothing here:
  one host's store is small enough to scan.
- Both backends: ``group_facets`` (crashes per group and host, image or
  container) and ``group_days`` (crashes per group and UTC day), filled
  from the crashes now and kept by the store from then on, so the group
  list and a group page read a few rows per group instead of counting every
  crash of the fleet's loudest bugs at each view.

``CREATE EXTENSION pg_trgm`` needs a role that may create it in the database
(pg_trgm is a trusted extension: the database's owner may, since PostgreSQL
13); otherwise a superuser runs it once and the upgrade then proceeds.

Revision ID: 0007
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0010"
branch_labels = None
depends_on = None

FACETS = ("host", "image", "container")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index("ix_groups_search_trgm", "groups", ["search_text"], postgresql_using="gin",
                        postgresql_ops={"search_text": "gin_trgm_ops"})
    op.create_table(
        "group_facets",
        sa.Column("group_id", sa.Integer, primary_key=True),
        sa.Column("facet", sa.String(16), primary_key=True),  # host | image | container
        sa.Column("value", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "group_days",
        sa.Column("group_id", sa.Integer, primary_key=True),
        sa.Column("day", sa.Integer, primary_key=True),  # floor(crashed_at / 86400)
        sa.Column("count", sa.Integer, nullable=False),
    )
    for facet in FACETS:  # column names from the constant above, never from input
        op.execute(f"INSERT INTO group_facets (group_id, facet, value, count) "
                   f"SELECT group_id, '{facet}', {facet}, count(*) FROM crashes "
                   f"WHERE {facet} IS NOT NULL GROUP BY group_id, {facet}")
    op.execute("INSERT INTO group_days (group_id, day, count) "
               "SELECT group_id, CAST(floor(crashed_at / 86400) AS INTEGER) AS d, count(*) FROM crashes "
               "GROUP BY group_id, d")


def downgrade() -> None:
    op.drop_table("group_days")
    op.drop_table("group_facets")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_groups_search_trgm", "groups")  # the extension stays: others may use it
