"""Bringing a catalog's schema to this imgpipe's head with Alembic, and refusing one
that a newer imgpipe wrote. Several runners may open a fresh catalog at once: the
upgrade runs under a lock, and the revision is read again once the lock is held."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from imgpipe.catalog.errors import CatalogError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0004"  # the newest revision in migrations/versions/ (a test holds the two equal)
_PG_MIGRATION_LOCK = 0x1A6919E  # an arbitrary advisory-lock id of imgpipe's own


def ensure_schema(engine: Engine, where: str) -> None:
    """Migrate the catalog at `where` (a masked URL) to head, or raise CatalogError if it is
    newer than this imgpipe."""
    with engine.connect() as conn:
        current = current_revision(conn)
    if current == HEAD:
        return  # the usual case, without importing Alembic (a fifth of a second)
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so one writer migrates at a time
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        current = current_revision(conn)
        if current == HEAD:
            return
        _refuse_unknown(current, where)
        from alembic import command

        config = _config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


def current_revision(conn: Connection) -> str | None:
    """What alembic_version says, read without Alembic; None for a new, empty catalog."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    revisions = sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return ",".join(revisions) or None  # several rows would be branches this imgpipe never makes


def _refuse_unknown(current: str | None, where: str) -> None:
    if current is None or current in known_revisions():
        return
    raise CatalogError(
        f"the catalog at {where} has schema revision {current}, newer than this imgpipe knows (up to {HEAD})",
        hint="upgrade imgpipe on this machine to the version the other runners use",
    )


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config
