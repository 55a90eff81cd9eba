"""The schema is Alembic's: created on first open, left alone when current, and a
catalog written by a newer imgpipe is refused rather than misread."""

import os
import stat
import subprocess
import sys

import pytest
from sqlalchemy import create_engine

from imgpipe.catalog import CatalogError, open_catalog
from imgpipe.catalog.schema import HEAD, alembic_head
from imgpipe.catalog.url import engine_url
from tests.catalog.conftest import execute
from tests.conftest import REPO


def test_opening_twice_is_idempotent_and_leaves_the_head_revision(open_cat, catalog_url):
    first = open_cat()
    first.claim_spec("web", "ci-1:/specs/web.yml")
    second = open_cat()
    assert execute(catalog_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    second.claim_spec("web", "ci-1:/specs/web.yml")  # the data survived the second open


def test_a_newer_catalog_is_refused(open_cat, catalog_url):
    open_cat().close()
    execute(catalog_url, "UPDATE alembic_version SET version_num = '0042_from_the_future'")

    with pytest.raises(CatalogError) as caught:
        open_catalog(catalog_url)
    message = str(caught.value)
    assert "0042_from_the_future" in message and "newer than this imgpipe" in message
    assert caught.value.hint and "upgrade imgpipe" in caught.value.hint
    assert caught.value.exit_code == 2
    assert execute(catalog_url, "SELECT version_num FROM alembic_version") == [("0042_from_the_future",)]


def test_the_head_constant_is_alembics_head():
    assert alembic_head() == HEAD


def test_the_models_match_the_migrations(open_cat, catalog_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from imgpipe.catalog.models import Base

    open_cat()
    engine = create_engine(engine_url(catalog_url))
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_runners_opening_a_new_catalog_at_once_agree(catalog_url):
    """Two processes open a fresh catalog together: one migrates, both get the same key,
    and their builds (written at the same time) are all there."""
    script = """
import sys
from imgpipe.catalog import open_catalog
catalog = open_catalog()
catalog.claim_spec("web", "ci-1:/specs/web.yml")
for n in range(5):
    build_id = f"{sys.argv[1]}-{n}"
    catalog.start_build(build_id, "web", "/specs/web.yml", ["local"], imgpipe_version="0", ansible_core="0")
    catalog.finish_build(build_id, "failed")
print(catalog.hmac_key().hex())
"""
    env = {**os.environ, "IMGPIPE_CATALOG": catalog_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"r{n}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in range(2)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert len({out for out, _ in results}) == 1
    with open_catalog(catalog_url) as catalog:
        assert len(catalog.builds()) == 10


def test_sqlite_catalog_is_private_and_in_wal_mode(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with open_catalog(f"sqlite:///{path}") as catalog:
        catalog.hmac_key()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the HMAC key
    assert execute(f"sqlite:///{path}", "PRAGMA journal_mode") == [("wal",)]


def test_the_default_catalog_is_sqlite_in_the_state_dir(isolated_state, monkeypatch):
    from imgpipe.catalog import catalog_url

    monkeypatch.delenv("IMGPIPE_CATALOG", raising=False)
    assert catalog_url() == f"sqlite:///{isolated_state / 'catalog.sqlite'}"
    monkeypatch.setenv("IMGPIPE_CATALOG", "postgresql://team@db/imgpipe")
    assert catalog_url() == "postgresql://team@db/imgpipe"
    assert catalog_url("sqlite:////x.sqlite") == "sqlite:////x.sqlite"
    with open_catalog(f"sqlite:///{isolated_state / 'catalog.sqlite'}"):
        pass
    monkeypatch.delenv("IMGPIPE_CATALOG")
    with open_catalog() as catalog:
        assert catalog.url_masked == f"sqlite:///{isolated_state / 'catalog.sqlite'}"


def test_an_unsupported_url_is_refused():
    with pytest.raises(CatalogError, match="unsupported catalog URL mysql://u:\\*\\*\\*@db/x"):
        open_catalog("mysql://u:hunter2@db/x")
    with pytest.raises(CatalogError, match="could not create the catalog"):
        open_catalog("sqlite:////nonexistent-dir/catalog.sqlite")
