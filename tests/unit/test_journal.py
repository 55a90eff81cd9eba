"""Resources are journaled on disk when created and removed newest first;
`imgpipe gc` finds what a kill -9 left behind."""

import json
import os
import signal
import subprocess
import sys

import imgpipe.journal as journal
from imgpipe.journal import Resources, collect, remove_path
from tests.conftest import IMGPIPE, REPO


def test_track_writes_journal_and_close_removes_newest_first(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr(journal, "_resolve", lambda _name: lambda path: order.append(path))
    res = Resources(tmp_path / "j", "b1", "local")
    res.track("path", remove_path, path="first")
    res.track("path", remove_path, path="second")
    on_disk = json.loads(res.path.read_text())
    assert [r["args"]["path"] for r in on_disk["resources"]] == ["first", "second"]
    assert on_disk["resources"][0]["cleaner"] == "imgpipe.journal:remove_path"
    assert res.close() == []
    assert order == ["second", "first"]
    assert not res.path.exists()


def test_failed_cleanup_is_reported_and_kept_in_journal(tmp_path):
    res = Resources(tmp_path / "j", "b1", "local")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    res.track("path", remove_path, path=str(blocker / "child"))  # NotADirectoryError on unlink
    failures = res.close()
    assert len(failures) == 1 and "child" in str(failures[0])
    assert res.path.exists()


def test_kept_build_survives_plain_gc_but_not_named_gc(tmp_path):
    victim = tmp_path / "vm-disk"
    victim.write_text("x")
    res = Resources(tmp_path / "j", "b2", "local")
    res.track("path", remove_path, path=str(victim))
    res.keep()
    assert res.close() == [] and victim.exists()
    # same pid is "alive"; pretend the owner died
    rec = json.loads(res.path.read_text())
    rec["pid"] = 999999999
    res.path.write_text(json.dumps(rec))
    removed, _ = collect(tmp_path / "j")
    assert removed == [] and victim.exists()
    removed, failures = collect(tmp_path / "j", build_id="b2")
    assert len(removed) == 1 and failures == [] and not victim.exists()


def test_gc_after_kill_9(tmp_path, isolated_state):
    victim = tmp_path / "overlay.qcow2"
    victim.write_text("disk")
    code = f"""
import os, signal
from imgpipe.journal import Resources, remove_path
from imgpipe.paths import state_dir
r = Resources(state_dir() / "journal", "killed-build", "local")
r.track("path", remove_path, path={str(victim)!r})
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "IMGPIPE_STATE_DIR": str(isolated_state)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO)
    assert proc.returncode == -signal.SIGKILL
    assert victim.exists()
    out = subprocess.run([*IMGPIPE, "gc"], env=env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "removed 1 resource(s) of build killed-build target local" in out.stdout
    assert not victim.exists()
    assert list((isolated_state / "journal").glob("*.json")) == []


def _journal_dead_build(state, build_id: str, victim) -> None:
    """A journal entry whose owner process is gone, as a kill -9 leaves it."""
    res = Resources(state / "journal", build_id, "local")
    res.track("path", remove_path, path=str(victim))
    rec = json.loads(res.path.read_text())
    rec["pid"] = 999999999
    res.path.write_text(json.dumps(rec))


def test_gc_dry_run_lists_and_changes_nothing(tmp_path, isolated_state):
    old, kept_victim = tmp_path / "old-overlay", tmp_path / "kept-overlay"
    old.write_text("disk")
    kept_victim.write_text("disk")
    _journal_dead_build(isolated_state, "20200101T000000Z-aaaaaa", old)
    kept = Resources(isolated_state / "journal", "20200101T000000Z-bbbbbb", "local")
    kept.track("path", remove_path, path=str(kept_victim))
    kept.keep()
    rec = json.loads(kept.path.read_text())
    kept.path.write_text(json.dumps({**rec, "pid": 999999999}))
    before = sorted(p.name for p in (isolated_state / "journal").iterdir())
    env = {**os.environ, "IMGPIPE_STATE_DIR": str(isolated_state)}
    for args in (["gc", "--dry-run"], ["gc", "--build", "20200101T000000Z-bbbbbb", "--dry-run"]):
        out = subprocess.run([*IMGPIPE, *args], env=env, cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert old.exists() and kept_victim.exists(), args
        assert sorted(p.name for p in (isolated_state / "journal").iterdir()) == before
    assert "would remove build 20200101T000000Z-bbbbbb target local" in out.stdout
    assert f"path path={kept_victim}" in out.stdout
    plain = subprocess.run([*IMGPIPE, "gc", "--dry-run"], env=env, cwd=REPO, capture_output=True, text=True)
    assert "would remove build 20200101T000000Z-aaaaaa target local" in plain.stdout
    assert "keeping build 20200101T000000Z-bbbbbb target local: kept by --on-error abort" in plain.stdout


def test_gc_older_than_applies_to_the_journal(tmp_path, isolated_state):
    young, old = tmp_path / "young", tmp_path / "old"
    young.write_text("disk")
    old.write_text("disk")
    now_id = __import__("imgpipe.pipeline", fromlist=["new_build_id"]).new_build_id()
    _journal_dead_build(isolated_state, now_id, young)
    _journal_dead_build(isolated_state, "20200101T000000Z-cccccc", old)
    env = {**os.environ, "IMGPIPE_STATE_DIR": str(isolated_state)}
    out = subprocess.run(
        [*IMGPIPE, "gc", "--older-than", "1"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert not old.exists() and young.exists()
    assert f"keeping build {now_id} target local: younger than 1 h" in out.stdout
