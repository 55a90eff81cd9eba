"""`bake --on-error ask` on a real terminal (a pty), as Packer's -on-error=ask: a failed
stage asks; `r` retries it, `c` cleans up; without a terminal it is refused up front."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.catalog.test_bake_history import PLUGIN
from tests.conftest import IMGPIPE, REPO, write

SPEC = """\
imgpipe: 1
name: asked
seal: {{enabled: false}}
targets:
  local: {{builder: fake, {how}}}
"""


def _start(tmp: Path, how: str) -> tuple[subprocess.Popen[bytes], int]:
    spec = write(tmp / "spec.yml", SPEC.format(how=how))
    env = {
        **os.environ,
        "IMGPIPE_CACHE_DIR": str(tmp / "cache"),
        "IMGPIPE_STATE_DIR": str(tmp / "state"),
        "IMGPIPE_CATALOG": f"sqlite:///{tmp / 'catalog.sqlite'}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN), os.environ.get("PYTHONPATH")])),
    }
    controller, terminal = pty.openpty()
    argv = [*IMGPIPE, "bake", str(spec), "--output", str(tmp / "out"), "--on-error", "ask"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    return proc, controller


def _read_until(controller: int, text: bytes, seen: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"no {text!r} in:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                seen += os.read(controller, 4096)
            except OSError:  # the process closed the terminal
                break


def _finish(proc: subprocess.Popen[bytes], controller: int, seen: bytearray) -> int:
    code = proc.wait(timeout=60)
    try:
        while select.select([controller], [], [], 0.2)[0]:
            seen += os.read(controller, 4096)
    except OSError:
        pass
    os.close(controller)
    return code


def test_retry_runs_the_failed_stage_again(tmp_path):
    proc, controller = _start(tmp_path, "fail_times: 1")
    seen = bytearray()
    _read_until(controller, b"[r] retry the stage? ", seen)
    assert b"target local failed in capture: the fake builder was told to fail" in seen
    os.write(controller, b"r\n")
    assert _finish(proc, controller, seen) == 0, seen.decode(errors="replace")
    (image,) = (tmp_path / "out" / "asked").glob("*/asked-local.qcow2")
    assert image.stat().st_size > 0


def test_cleanup_ends_the_bake_and_leaves_nothing(tmp_path):
    proc, controller = _start(tmp_path, "fail: true")
    seen = bytearray()
    _read_until(controller, b"retry the stage? ", seen)
    os.write(controller, b"c\n")
    assert _finish(proc, controller, seen) == 1, seen.decode(errors="replace")
    assert list((tmp_path / "out" / "asked").glob("*/*.qcow2")) == []
    assert list((tmp_path / "state" / "journal").glob("*.json")) == []
    assert seen.count(b"retry the stage? ") == 1  # answered once: not asked again


def test_without_a_terminal_ask_is_refused_before_anything_runs(tmp_path):
    spec = write(tmp_path / "spec.yml", SPEC.format(how="fail: true"))
    proc = subprocess.run(
        [*IMGPIPE, "bake", str(spec), "--output", str(tmp_path / "out"), "--on-error", "ask"],
        cwd=REPO,
        env={**os.environ, "IMGPIPE_STATE_DIR": str(tmp_path / "state"), "IMGPIPE_CACHE_DIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--on-error ask needs a terminal" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
