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
