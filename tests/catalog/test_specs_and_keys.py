"""A spec name belongs to one place; the HMAC key is one per catalog."""

import pytest

from imgpipe.catalog import CatalogError


def test_a_spec_name_belongs_to_its_first_claim(open_cat):
    catalog = open_cat()
    catalog.claim_spec("web", "ci-1:/srv/team-a/web.yml")
    catalog.claim_spec("web", "ci-1:/srv/team-a/web.yml")
    open_cat().claim_spec("web", "ci-1:/srv/team-a/web.yml")

    with pytest.raises(CatalogError) as caught:
        open_cat().claim_spec("web", "laptop:/home/bob/team-b/web.yml")
    assert "ci-1:/srv/team-a/web.yml" in str(caught.value)
    assert "laptop:/home/bob/team-b/web.yml" in str(caught.value)
    assert caught.value.exit_code == 2 and caught.value.hint

    catalog.claim_spec("team-b-web", "laptop:/home/bob/team-b/web.yml")  # a qualified name is free


def test_the_hmac_key_is_one_per_catalog(open_cat, tmp_path):
    from imgpipe.catalog import open_catalog

    key = open_cat().hmac_key()
    assert isinstance(key, bytes) and len(key) == 32
    assert open_cat().hmac_key() == key
    assert open_cat().hmac_key() == key

    with open_catalog(f"sqlite:///{tmp_path / 'another.sqlite'}") as another:
        assert another.hmac_key() != key
