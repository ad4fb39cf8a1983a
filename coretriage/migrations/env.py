"""Alembic's environment: migrations run on the connection (and inside the
transaction) that ``coretriage.migrations.upgrade`` passes in. There is no
offline (``--sql``) mode."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
