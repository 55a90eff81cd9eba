"""`imgpipe nightly` with a parent and a child spec (fake builder), on SQLite and
PostgreSQL: the parent bakes first even when the child's file comes first and specs run in
parallel; the child's catalog row names its parent build; when the parent is rebuilt, the
child is rebuilt in the same run and says why; a cycle fails its specs, located, at once."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.catalog.test_bake_history import imgpipe
from tests.catalog.test_nightly import nightly, rows
from tests.conftest import write

SPEC = """\
imgpipe: 1
name: {name}
variables:
  token: {{default: "{token}"}}
{source}seal: {{enabled: false}}
verify: {{enabled: false}}
targets:
  local: {{builder: fake, capture_delay_s: 1}}
"""


def spec(directory: Path, name: str, parent: str | None = None, token: str = "one") -> Path:
    source = f"source: {{parent: {parent}}}\n" if parent else ""
    return write(directory / f"{name}.yml", SPEC.format(name=name, source=source, token=token))


def builds(tmp: Path, url: str, name: str) -> list[dict]:
    found = imgpipe(tmp, url, "builds", name, "--json")
    return json.loads(found.stdout)["builds"]


def shown(tmp: Path, url: str, build_id: str) -> dict:
    return json.loads(imgpipe(tmp, url, "show", build_id, "--json").stdout)["build"]


def test_nightly_bakes_the_parent_first_and_records_it_in_the_child(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    spec(specs, "app", parent="zbase@latest")  # listed before its parent
    spec(specs, "zbase")
    first = nightly(tmp_path, catalog_url, str(specs), "--parallel", "2", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    runs = rows(json.loads(first.stdout.strip().splitlines()[-1]))
    assert runs["zbase"]["result"] == runs["app"]["result"] == "succeeded", runs
    (base,) = builds(tmp_path, catalog_url, "zbase")
    (app,) = builds(tmp_path, catalog_url, "app")
    assert datetime.fromisoformat(app["started_at"]) >= datetime.fromisoformat(base["finished_at"])
    child = shown(tmp_path, catalog_url, app["id"])["targets"]["local"]
    assert child["parents"] == [
        {
            "ref": "zbase@latest",
            "build_id": base["id"],
            "target": "local",
            "spec": "zbase",
            "status": "succeeded",
        }
    ]
    assert child["record"]["source"]["parent"]["build_id"] == base["id"]
    assert child["inputs"]["source"] == {"kind": "parent", "build_id": base["id"], "target": "local"}

    unchanged = nightly(tmp_path, catalog_url, str(specs), "--json")
    runs = rows(json.loads(unchanged.stdout.strip().splitlines()[-1]))
    assert {runs[n]["result"] for n in runs} == {"skipped"}, runs

    spec(specs, "zbase", token="two")  # the parent changes: tonight both are baked again
    second = nightly(tmp_path, catalog_url, str(specs), "--parallel", "2", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    runs = rows(json.loads(second.stdout.strip().splitlines()[-1]))
    new_base = builds(tmp_path, catalog_url, "zbase")[0]
    assert runs["app"]["result"] == "succeeded"
    assert f"parent zbase@latest is now build {new_base['id']} (was {base['id']})" in runs["app"]["why"]
    new_app = builds(tmp_path, catalog_url, "app")[0]
    assert (
        shown(tmp_path, catalog_url, new_app["id"])["targets"]["local"]["parents"][0]["build_id"]
        == (new_base["id"])
    )
    text = imgpipe(tmp_path, catalog_url, "show", new_app["id"]).stdout
    assert f"parent      zbase@latest = build {new_base['id']} target local" in text, text


def test_a_failed_parent_skips_its_child_and_a_cycle_fails_located(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    spec(specs, "kid", parent="broken@latest")
    write(
        specs / "broken.yml",
        SPEC.format(name="broken", source="", token="x").replace("capture_delay_s: 1", "fail: true"),
    )
    spec(specs, "ping", parent="pong@latest")
    spec(specs, "pong", parent="ping@latest")
    done = nightly(tmp_path, catalog_url, str(specs), "--parallel", "2", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    runs = rows(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs["broken"]["result"] == "failed"
    assert runs["kid"]["result"] == "skipped"
    assert runs["kid"]["why"] == "skipped: the bake of its parent spec broken failed"
    for name, other in (("ping", "pong"), ("pong", "ping")):
        assert runs[name]["result"] == "failed"
        error = runs[name]["errors"]["spec"]
        assert f"{name}.yml:5:" in error and "source.parent: a cycle of parents:" in error, error
        assert other in error
    assert builds(tmp_path, catalog_url, "kid") == []
