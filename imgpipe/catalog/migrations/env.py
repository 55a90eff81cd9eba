"""Alembic's entry point, run only through imgpipe.catalog.schema: it migrates on the
connection it is handed (inside the caller's transaction), never on a URL of its own."""

from alembic import context

if context.is_offline_mode():
    raise RuntimeError("imgpipe's catalog migrations run online only (imgpipe opens the catalog)")

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
