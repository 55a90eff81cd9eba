"""The PostgreSQL password shows in no message and in no file imgpipe writes."""

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url

from imgpipe.catalog import CatalogError, mask_url, open_catalog
from tests.catalog.conftest import execute


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://imgpipe:s3cret@db:5432/imgpipe", "postgresql://imgpipe:***@db:5432/imgpipe"),
        ("postgresql://imgpipe@/imgpipe?host=/run/pg&password=s3cret", "postgresql://imgpipe@/imgpipe?host=/run/pg&password=***"),
        ("postgresql+psycopg://u:s3cr%40t@db/x", "postgresql+psycopg://u:***@db/x"),
        ("sqlite:////var/lib/imgpipe/catalog.sqlite", "sqlite:////var/lib/imgpipe/catalog.sqlite"),
        ("not a url://u:s3cret@db/x", "not a url://u:***@db/x"),
    ],
)  # fmt: skip
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def _all_forms(password):
    return {password, quote(password, safe=""), quote(password)}


def test_no_message_holds_the_password(postgres, tmp_path, isolated_state):
    url = postgres.new_database()
    with open_catalog(url) as catalog:
        assert not any(form in catalog.url_masked for form in _all_forms(postgres.password))
        assert "imgpipe:***@" in catalog.url_masked
        catalog.claim_spec("web", "ci-1:/srv/web.yml")
        with pytest.raises(CatalogError) as taken:
            catalog.claim_spec("web", "laptop:/web.yml")

    wrong = postgres.url("catalog_1", "wrong-" + postgres.password)
    with pytest.raises(CatalogError) as refused:
        open_catalog(wrong)
    assert "password authentication failed" in str(refused.value)

    no_server = make_url(url).update_query_dict({"host": str(tmp_path / "no-server-here")})
    gone = no_server.render_as_string(hide_password=False)
    with pytest.raises(CatalogError) as unreachable:
        open_catalog(gone)
    assert unreachable.value.hint and "reachable" in unreachable.value.hint

    execute(url, "UPDATE alembic_version SET version_num = '0042_from_the_future'")
    with pytest.raises(CatalogError) as newer:
        open_catalog(url)

    for error in (taken.value, refused.value, unreachable.value, newer.value):
        text = f"{error}\n{error.hint}"
        assert "***@" in text or "taken" in text
        assert not any(form in text for form in _all_forms(postgres.password)), text


def test_no_file_imgpipe_writes_holds_the_password(postgres, tmp_path, isolated_state, monkeypatch):
    """A whole record cycle with the URL in IMGPIPE_CATALOG, then every file under the
    test's directories (the state dir included) is searched for the password."""
    monkeypatch.setenv("IMGPIPE_CATALOG", postgres.new_database())
    monkeypatch.chdir(tmp_path)
    with open_catalog() as catalog:
        catalog.claim_spec("web", "ci-1:/srv/web.yml")
        catalog.start_build("b1", "web", "/srv/web.yml", ["local"], imgpipe_version="0", ansible_core="0")
        catalog.finish_target("b1", "local", status="succeeded", fingerprint="f", fingerprint_parts={},
                              publish_fingerprint=None, record={"files": []})  # fmt: skip
        catalog.finish_build("b1", "succeeded")
        catalog.reap_abandoned()
        assert catalog.last_good("web", "local") is not None

    files = [p for p in [*Path(tmp_path).rglob("*"), *isolated_state.rglob("*")] if p.is_file()]
    forms = [form.encode() for form in _all_forms(postgres.password)]
    assert [p for p in files if any(form in p.read_bytes() for form in forms)] == []
    assert (
        os.environ["IMGPIPE_CATALOG"].count(quote(postgres.password, safe="")) == 1
    )  # the search can find it
