"""A spec's lease in the catalog, on SQLite and PostgreSQL: one holder at a time; free
again when released, expired, or held by a process of this host that is gone; never
taken from a live holder; and a catalog of the previous schema keeps its data."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from imgpipe.catalog.owner import Owner
from imgpipe.lease import LeaseHeld, LeaseLost, SpecLease
from tests.catalog.conftest import execute


@pytest.fixture
def catalog(open_cat):  # type: ignore[no-untyped-def]
    opened = open_cat()
    opened.claim_spec("web", "ci-1:/specs/web.yml")
    return opened


def test_one_holder_at_a_time_until_released(catalog):
    first = catalog.acquire_lease("web", "holder-a", 60)
    assert first.holder == "holder-a" and first.host == Owner.current().host
    second = catalog.acquire_lease("web", "holder-b", 60)
    assert second.holder == "holder-a"  # refused: it names who has it
    assert catalog.renew_lease("web", "holder-a", 60) and not catalog.renew_lease("web", "holder-b", 60)
    catalog.release_lease("web", "holder-b")  # not b's to release
    assert catalog.acquire_lease("web", "holder-b", 60).holder == "holder-a"
    catalog.release_lease("web", "holder-a")
    assert catalog.acquire_lease("web", "holder-b", 60).holder == "holder-b"


def test_an_expired_lease_is_taken_and_its_old_holder_cannot_renew_it(catalog):
    catalog.acquire_lease("web", "holder-a", 0.5)
    time.sleep(0.7)
    assert catalog.acquire_lease("web", "holder-b", 60).holder == "holder-b"
    assert not catalog.renew_lease("web", "holder-a", 60)


def test_a_lease_of_a_dead_process_here_is_free_at_once(catalog, catalog_url):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = {**Owner.current().__dict__, "pid": int(dead.stdout), "pid_start": "1"}
    catalog.acquire_lease("web", "holder-a", 600)
    execute(catalog_url, "UPDATE lease SET owner = :owner", owner=json.dumps(owner))
    assert catalog.acquire_lease("web", "holder-b", 60).holder == "holder-b"


def test_another_hosts_live_lease_is_respected_until_it_expires(catalog, catalog_url):
    catalog.acquire_lease("web", "holder-a", 600)
    owner = {**Owner.current().__dict__, "host": "build-host-b", "pid": 1}
    execute(catalog_url, "UPDATE lease SET owner = :owner", owner=json.dumps(owner))
    held = catalog.acquire_lease("web", "holder-b", 60)
    assert held.holder == "holder-a" and held.host == "build-host-b"


def test_spec_lease_holds_renews_and_notices_a_loss(catalog):
    with SpecLease(catalog, "web", ttl_s=0.6) as lease:
        with pytest.raises(LeaseHeld) as held:
            SpecLease(catalog, "web", ttl_s=60).__enter__()
        assert held.value.exit_code == 75 and "being baked by another runner" in str(held.value)
        time.sleep(1.0)  # beyond the TTL: the renewer kept it
        lease.check()
        catalog.release_lease("web", lease.holder)
        catalog.acquire_lease("web", "thief", 60)
        with pytest.raises(LeaseLost):
            lease.check()
    assert catalog.acquire_lease("web", "next", 60).holder == "thief"  # the loser released nothing


def test_a_catalog_of_the_first_schema_is_migrated_with_its_data(catalog_url):
    from alembic import command

    from imgpipe.catalog import open_catalog
    from imgpipe.catalog.schema import HEAD, _config
    from imgpipe.catalog.store import _create_engine

    engine = _create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            config = _config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
    finally:
        engine.dispose()
    execute(
        catalog_url, "INSERT INTO spec (name, origin, claimed_at) VALUES ('old', 'h:/old.yml', '2026-01-01')"
    )
    with open_catalog(catalog_url) as catalog:
        state = catalog.spec_state("old")
        assert state is not None and state.nightly_failures == 0 and state.disabled_at is None
        assert catalog.acquire_lease("old", "holder-a", 60).holder == "holder-a"
    assert execute(catalog_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
