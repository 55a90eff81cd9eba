"""Retention of local images on SQLite and PostgreSQL: `prune` removes a pruned build's
recorded files and build directory (nothing else under the output directory), its
channel history entries, and keeps its catalog record marked pruned; a dry run changes no
file and no row (not even the reaping of abandoned builds); a spec whose file is gone is
skipped and said so; a step that fails is journaled, and the next prune finishes it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from imgpipe.catalog import Catalog
from imgpipe.channels import Mover
from imgpipe.retention import prune
from tests.catalog.conftest import execute
from tests.conftest import IMGPIPE, REPO, write

NOW = datetime.now(UTC)


def spec_file(tmp: Path, retention: str | None = "{keep: 2}", name: str = "web") -> Path:
    policy = f"retention: {retention}\n" if retention else ""
    return write(
        tmp / f"{name}.yml", f"imgpipe: 1\nname: {name}\n{policy}targets:\n  local: {{builder: libvirt}}\n"
    )


def local_build(
    catalog: Catalog, url: str, build_id: str, days_old: float, spec: Path, *, status: str = "succeeded"
) -> Path:
    """A recorded build of target `local` with its build directory as a bake leaves it."""
    name = spec.stem
    out = spec.parent / "out" / name / build_id
    (out / "logs" / "local").mkdir(parents=True)
    (out / "logs" / "local" / "ansible-provision.log").write_text("ok\n")
    files = []
    if status == "succeeded":
        (out / f"{name}-local.qcow2").write_bytes(b"qcow")
        (out / "SHA256SUMS").write_text(f"x  {name}-local.qcow2\n")
        files = [{"name": f"{name}-local.qcow2", "size": 4, "sha256": "x"}]
    catalog.start_build(build_id, name, str(spec), ["local"], imgpipe_version="0", ansible_core="0")
    catalog.finish_target(
        build_id,
        "local",
        status=status,
        fingerprint=None,
        fingerprint_parts={},
        publish_fingerprint=None,
        record={"artifact_id": f"{name}-local.qcow2", "files": files, "output_dir": str(out)},
    )
    catalog.finish_build(build_id, status)
    when: Any = NOW - timedelta(days=days_old)
    if url.startswith("sqlite"):
        when = when.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    execute(url, "UPDATE build SET started_at = :t WHERE id = :i", t=when, i=build_id)
    return out


def tree(root: Path) -> dict[str, Any]:
    return {
        str(p.relative_to(root)): os.readlink(p)
        if p.is_symlink()
        else (p.read_bytes() if p.is_file() else "dir")
        for p in sorted(root.rglob("*"))
    }


def rows(url: str) -> dict[str, list[Any]]:
    tables = ("build", "target_build", "artifact", "channel", "channel_history", "spec", "lease")
    return {t: sorted(repr(r) for r in execute(url, f"SELECT * FROM {t}")) for t in tables}


def cli(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGPIPE_CATALOG": url, "IMGPIPE_STATE_DIR": str(tmp / "state")}
    return subprocess.run(
        [*IMGPIPE, "prune", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_prune_removes_recorded_files_and_history_and_keeps_the_record(tmp_path, open_cat, catalog_url):
    catalog = open_cat()
    catalog.claim_spec("web", "ci:/specs/web.yml")
    spec = spec_file(tmp_path)
    dirs = {
        "b1": local_build(catalog, catalog_url, "b1", 40, spec),  # channel old points at it
        "b2": local_build(catalog, catalog_url, "b2", 30, spec, status="failed"),
        "b3": local_build(catalog, catalog_url, "b3", 20, spec),
        "b4": local_build(catalog, catalog_url, "b4", 2, spec),
        "b5": local_build(catalog, catalog_url, "b5", 1, spec),
    }
    mover = Mover(catalog)
    mover.promote("web", "b1", "old")
    mover.promote("web", "b3", "stable")
    mover.promote("web", "b5", "stable")
    stray = write(tmp_path / "out" / "web" / "notes.txt", "not imgpipe's\n")

    report = prune(catalog, ["web"])

    assert report.failures == [] and report.removed() == ["b2", "b3"]
    assert not dirs["b2"].exists() and not dirs["b3"].exists()
    for kept in ("b1", "b4", "b5"):
        assert (dirs[kept] / "web-local.qcow2").is_file() and (dirs[kept] / "logs").is_dir()
    assert stray.is_file()
    assert os.readlink(tmp_path / "out" / "web@stable") == "web/b5"
    history = {(m.channel, m.from_build, m.to_build) for m in catalog.channel_history("web")}
    assert history == {("old", None, "b1"), ("stable", "b3", "b5")}  # the move to b3 is forgotten
    for build_id in ("b2", "b3"):
        view = catalog.get(build_id)
        assert view is not None and view.pruned_at is not None and view.pruning is None
    plan = {b.build_id: b for p in report.specs for b in p.builds}
    assert plan["b1"].reasons == ["channel old"]
    assert "failed, older than the 2 newest succeeded builds" in plan["b2"].reasons[0]
    assert prune(catalog, ["web"]).removed() == []  # a pruned build is not decided again


def test_a_dry_run_changes_no_file_and_no_row(tmp_path, open_cat, catalog_url):
    catalog = open_cat()
    catalog.claim_spec("web", "ci:/specs/web.yml")
    spec = spec_file(tmp_path, "{keep: 1}")
    old = local_build(catalog, catalog_url, "b1", 10, spec)
    local_build(catalog, catalog_url, "b2", 1, spec)
    catalog.start_build("b3", "web", str(spec), ["local"], imgpipe_version="0", ansible_core="0")
    execute(catalog_url, "UPDATE build SET owner_pid_start = '1' WHERE id = 'b3'")  # its process died
    before = (rows(catalog_url), tree(tmp_path / "out"))

    dry = cli(tmp_path, catalog_url, "web", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert (rows(catalog_url), tree(tmp_path / "out")) == before  # not even b3 reaped
    assert f"file {old / 'web-local.qcow2'}" in dry.stdout
    assert f"directory {old} (sums, logs, manifest)" in dry.stdout
    assert "would remove b1" in dry.stdout and "keep b3 (running" in dry.stdout
    assert "would remove 1 build" in dry.stdout

    as_json = json.loads(cli(tmp_path, catalog_url, "web", "--dry-run", "--json").stdout)
    assert set(as_json) == {"v", "dry_run", "ok", "resumed", "specs", "skipped", "failures", "pruned"}
    assert as_json["v"] == 1 and as_json["dry_run"] is True and as_json["ok"] is True
    (web,) = as_json["specs"]
    assert set(web) == {"spec", "retention", "builds"}
    assert set(web["builds"][0]) == {
        "build_id",
        "started_at",
        "status",
        "action",
        "reasons",
        "steps",
        "notes",
        "resumed",
    }
    assert {b["build_id"]: b["action"] for b in web["builds"]} == {"b1": "remove", "b2": "keep", "b3": "keep"}
    assert (rows(catalog_url), tree(tmp_path / "out")) == before

    real = cli(tmp_path, catalog_url, "web")
    assert real.returncode == 0, real.stderr
    assert not old.exists() and "pruned 1 build" in real.stdout


def test_unreadable_or_policyless_specs_are_skipped_and_said_so(tmp_path, open_cat, catalog_url):
    catalog = open_cat()
    for name in ("gone", "plain", "web"):
        catalog.claim_spec(name, f"ci:/specs/{name}.yml")
    gone = spec_file(tmp_path, name="gone")
    local_build(catalog, catalog_url, "g1", 10, gone)
    local_build(catalog, catalog_url, "g2", 9, gone)
    local_build(catalog, catalog_url, "g3", 8, gone)
    gone.unlink()
    local_build(catalog, catalog_url, "p1", 10, spec_file(tmp_path, None, name="plain"))
    web = spec_file(tmp_path, "{keep: 1}")
    local_build(catalog, catalog_url, "w1", 10, web)
    local_build(catalog, catalog_url, "w2", 1, web)

    every = cli(tmp_path, catalog_url)

    assert every.returncode == 0, every.stderr
    assert f"gone: skipped: can't read its spec {gone}: " in every.stdout
    assert "plain: skipped: no retention policy" in every.stdout
    assert "pruned 1 build" in every.stdout and "Traceback" not in every.stderr
    assert (tmp_path / "out" / "gone" / "g1").is_dir()  # its policy is unknown: nothing removed
    named = cli(tmp_path, catalog_url, "gone")
    assert named.returncode == 1 and "can't read its spec" in named.stdout + named.stderr
    unknown = cli(tmp_path, catalog_url, "nosuch")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: spec 'nosuch' is not in the catalog")
    assert "Traceback" not in named.stderr + unknown.stderr


def test_a_step_that_fails_stays_journaled_and_the_next_prune_finishes_it(tmp_path, open_cat, catalog_url):
    catalog = open_cat()
    catalog.claim_spec("web", "ci:/specs/web.yml")
    spec = spec_file(tmp_path, "{keep: 1}")
    old = local_build(catalog, catalog_url, "b1", 10, spec)
    local_build(catalog, catalog_url, "b2", 1, spec)
    image = old / "web-local.qcow2"
    image.unlink()
    (image / "blocker").mkdir(parents=True)  # a directory where the image file was: unlink fails

    failed = cli(tmp_path, catalog_url, "web")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"error: b1: file {image}: " in failed.stdout
    (halfway,) = catalog.pruning_builds()
    assert halfway.id == "b1" and halfway.pruned_at is None
    assert (old / "logs").is_dir()  # the steps after the failed one did not run

    (image / "blocker").rmdir()
    image.rmdir()
    done = cli(tmp_path, catalog_url, "web")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "b1: finishing an interrupted prune" in done.stderr
    assert not old.exists() and catalog.pruning_builds() == []
    assert catalog.get("b1").pruned_at is not None  # type: ignore[union-attr]


def test_files_on_another_host_are_left_to_that_host(tmp_path, open_cat, catalog_url):
    catalog = open_cat()
    catalog.claim_spec("web", "ci:/specs/web.yml")
    spec = spec_file(tmp_path, "{keep: 1}")
    old = local_build(catalog, catalog_url, "b1", 10, spec)
    local_build(catalog, catalog_url, "b2", 1, spec)
    execute(catalog_url, "UPDATE build SET owner_host = 'elsewhere' WHERE id = 'b1'")
    execute(catalog_url, "UPDATE artifact SET host = 'elsewhere' WHERE build_id = 'b1'")
    assert socket.gethostname() != "elsewhere"

    report = prune(catalog, ["web"])

    assert report.removed() == [] and old.is_dir()
    (b1,) = [b for p in report.specs for b in p.builds if b.build_id == "b1"]
    assert b1.action == "keep" and "its files are on host elsewhere: run `imgpipe prune` there" in b1.reasons


def test_nightly_prunes_after_it_bakes(tmp_path, catalog_url):
    from tests.catalog.test_nightly import nightly, spec

    specs = tmp_path / "specs"
    spec(specs, "kept", extra="retention: {keep: 1}\n")
    first = nightly(tmp_path, catalog_url, str(specs), "--json")
    assert first.returncode == 0, first.stderr
    (first_run,) = json.loads(first.stdout.splitlines()[-1])["specs"]
    assert first_run["pruned"] == []
    old = tmp_path / "out" / "kept" / first_run["build_id"]
    assert old.is_dir()

    second = nightly(tmp_path, catalog_url, str(specs), "--json", env={"IMGPIPE_VAR_delay": "0.01"})
    assert second.returncode == 0, second.stderr
    (run,) = json.loads(second.stdout.splitlines()[-1])["specs"]
    assert run["result"] == "succeeded" and run["build_id"] != first_run["build_id"]
    assert run["pruned"] == [first_run["build_id"]] and "prune" not in run["errors"]
    assert not old.exists() and (tmp_path / "out" / "kept" / run["build_id"]).is_dir()
