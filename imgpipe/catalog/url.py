"""Which catalog to open, and how to name it in a message without its password."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from imgpipe.catalog.errors import CatalogError
from imgpipe.paths import state_dir

ENV = "IMGPIPE_CATALOG"
MASK = "***"

# psycopg 3 is the driver imgpipe ships; SQLAlchemy's default for postgresql:// is psycopg2.
_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def catalog_url(explicit: str | None = None) -> str:
    """The catalog to use: `--catalog URL`, else $IMGPIPE_CATALOG, else SQLite in the state dir."""
    if explicit:
        return explicit
    if os.environ.get(ENV):
        return os.environ[ENV]
    return f"sqlite:///{state_dir() / 'catalog.sqlite'}"


def engine_url(url: str) -> URL:
    """The URL SQLAlchemy connects with: parsed, with psycopg chosen for PostgreSQL."""
    parsed = _parse(url)
    scheme = parsed.drivername
    if scheme in ("postgresql+psycopg", "sqlite+pysqlite"):
        return parsed
    if scheme not in _DRIVERS:
        raise CatalogError(
            f"unsupported catalog URL {mask_url(url)}",
            hint="use sqlite:///PATH or postgresql://USER@HOST/DB (the password may come from PGPASSWORD)",
        )
    return parsed.set(drivername=_DRIVERS[scheme])


def mask_url(url: str) -> str:
    """The URL as a message may show it: `postgresql://imgpipe:***@db/imgpipe`."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return re.sub(r"(://[^:/?#@]*:)[^@]*@", rf"\1{MASK}@", url.split("?", 1)[0])
    query = {k: (MASK if k.lower() == "password" else v) for k, v in parsed.query.items()}
    shown, _, rest = parsed.set(query=query).render_as_string(hide_password=True).partition("?")
    return f"{shown}?{unquote(rest)}" if rest else shown  # ?host=/run/pg reads better unquoted


def password_of(url: str) -> str | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    secret = parsed.password or parsed.query.get("password")
    return secret if isinstance(secret, str) and secret else None


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's password replaced, in case a
    driver ever echoes it."""
    secret = password_of(url)
    if not secret:
        return text
    for form in {secret, quote(secret, safe="")}:
        text = text.replace(form, MASK)
    return text


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise CatalogError(
            f"the catalog URL is not a URL: {mask_url(url)}",
            hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
        ) from exc
