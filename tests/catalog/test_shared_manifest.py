"""`bake --manifest PATH` appends each build's records to one file, as Packer's manifest
post-processor does: two bakes at once both land, and scripts read `.builds[-1]`."""

from __future__ import annotations

import json

import pytest

from tests.catalog.test_bake_history import imgpipe
from tests.catalog.test_nightly import spec
from tests.conftest import write


@pytest.fixture
def catalog_url(tmp_path, isolated_state):
    return f"sqlite:///{tmp_path / 'catalog.sqlite'}"


def test_two_concurrent_bakes_both_append_their_records(tmp_path, catalog_url):
    shared = tmp_path / "manifests" / "all.json"
    paths = [spec(tmp_path / "specs", name, extra="") for name in ("one", "two")]
    argv = [
        ["bake", str(p), "--output", str(tmp_path / "out"), "--var", "delay=2", "--manifest", str(shared)]
        for p in paths
    ]
    runs = [imgpipe(tmp_path, catalog_url, *a, wait=False) for a in argv]
    outputs = [r.communicate(timeout=120) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [err for _, err in outputs]
    doc = json.loads(shared.read_text())
    assert sorted(b["custom_data"]["spec"] for b in doc["builds"]) == ["one", "two"]
    assert doc["last_run_uuid"] in {b["packer_run_uuid"] for b in doc["builds"]}
    third = imgpipe(tmp_path, catalog_url, *argv[0][:-2], "--var", "delay=0", "--manifest", str(shared))
    assert third.returncode == 0, third.stderr
    doc = json.loads(shared.read_text())
    assert len(doc["builds"]) == 3 and doc["builds"][-1]["packer_run_uuid"] == doc["last_run_uuid"]
    per_build = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/*/manifest.json")]
    assert sorted(b["packer_run_uuid"] for m in per_build for b in m["builds"]) == sorted(
        b["packer_run_uuid"] for b in doc["builds"]
    )  # the per-build manifests stay, with the same records


def test_a_file_that_is_not_a_manifest_is_refused_before_baking(tmp_path, catalog_url):
    shared = write(tmp_path / "notes.json", "{not json\n")
    path = spec(tmp_path / "specs", "one")
    proc = imgpipe(
        tmp_path, catalog_url, "bake", str(path), "--output", str(tmp_path / "out"), "--manifest", str(shared)
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{shared}:1: --manifest: not a JSON manifest" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing was baked
