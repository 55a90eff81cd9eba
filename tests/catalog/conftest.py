"""Every catalog test runs twice: on SQLite and on a real PostgreSQL server that this
session starts (unix socket only, password auth) and removes afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.catalog.postgres import PostgresServer, start_postgres

if TYPE_CHECKING:
    from imgpipe.catalog import Catalog

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "catalog: the build catalog, on SQLite and on a real PostgreSQL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.catalog)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path, isolated_state: Path) -> str:
    """A fresh, empty catalog's URL (with its password, for PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def open_cat(catalog_url: str) -> Iterator[Callable[[], Catalog]]:
    """open_catalog(catalog_url), any number of times; every catalog closed afterwards."""
    from imgpipe.catalog import open_catalog

    opened: list[Catalog] = []

    def opener() -> Catalog:
        opened.append(open_catalog(catalog_url))
        return opened[-1]

    yield opener
    for catalog in opened:
        catalog.close()


def execute(url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    """Raw SQL on a catalog, behind imgpipe's back (a newer imgpipe, another host's build)."""
    from sqlalchemy import create_engine, text

    from imgpipe.catalog.url import engine_url

    engine = create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()
