"""Alembic environment for the warehouse, run by slowburn.migrations.upgrade (no alembic.ini).

The caller passes an open connection in config.attributes["connection"], already inside the
transaction (and lock) the upgrade runs in; nothing here commits.
"""
from alembic import context

from slowburn.migrations import VERSION_TABLE
from slowburn.schema import metadata, sync_comments

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
sync_comments(connection)
