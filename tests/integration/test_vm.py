"""`imgpipe vm up` against real libvirtd: the VM outlives the command (with its package
proxy), a kill -9 of its supervisor leaves a journal that `imgpipe gc` clears, and Ctrl-C
during `vm up` removes everything."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from imgpipe.vm import Instance
from tests.conftest import REPO
from tests.integration.conftest import NOTHING, leftovers, run_imgpipe


def vm_env(imgpipe_env, tmp_path):
    return {**imgpipe_env, "IMGPIPE_STATE_DIR": str(tmp_path / "state")}


def tunnel_processes(build_id: str) -> list[int]:
    """ssh processes still serving this build (the package tunnel's control master)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"ssh") and any(build_id.encode() in a for a in argv):
            found.append(int(cmdline.parent.name))
    return found


def test_vm_outlives_up_and_gc_clears_it_after_its_supervisor_is_killed(imgpipe_env, base_image, tmp_path):
    env = vm_env(imgpipe_env, tmp_path)
    path = tmp_path / "eph" / "web.json"
    proc = run_imgpipe(env, "vm", "up", "examples/web.yml", "--instance-file", str(path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    instance = Instance.read(path)
    try:
        # after `vm up` returned: the pinned key logs in, and packages come through the proxy
        reached = subprocess.run(
            [
                *instance.ssh_command(),
                "sudo -n apt-get -q -o Acquire::Retries=0 update >/dev/null && echo ok",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert reached.stdout.strip() == "ok", reached.stderr
        os.kill(instance.supervisor_pid, signal.SIGKILL)
        reaped_by = time.monotonic() + 60  # gc counts a zombie as alive; init reaps it within moments
        while Path(f"/proc/{instance.supervisor_pid}").exists() and time.monotonic() < reaped_by:
            time.sleep(0.1)
        assert leftovers(env, instance.build_id)["domains"]  # the journal's owner died, not the VM
        gc = run_imgpipe(env, "gc")
        assert gc.returncode == 0, gc.stderr
        assert f"removing build {instance.build_id}" in gc.stdout
        assert leftovers(env, instance.build_id) == NOTHING
        assert tunnel_processes(instance.build_id) == []
        # the instance file outlived its VM: down says so and removes it, twice is fine
        for _ in range(2):
            down = run_imgpipe(env, "vm", "down", "--instance-file", str(path))
            assert down.returncode == 0, down.stderr
        assert not path.exists()
    finally:
        run_imgpipe(env, "vm", "down", "--instance-file", str(path))
        run_imgpipe(env, "gc", "--build", instance.build_id)


def test_ctrl_c_during_up_removes_everything(imgpipe_env, base_image, tmp_path):
    env = vm_env(imgpipe_env, tmp_path)
    path = tmp_path / "eph" / "web.json"
    up = subprocess.Popen(
        [sys.executable, "-m", "imgpipe.cli", "vm", "up", "examples/web.yml", "--instance-file", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = tmp_path / "state" / "journal"
    deadline = time.monotonic() + 300
    build_id = None
    while time.monotonic() < deadline and up.poll() is None:  # the domain exists: mid-boot
        entries = [json.loads(p.read_text()) for p in journal.glob("*.json")] if journal.is_dir() else []
        if any(r["kind"] == "libvirt-domain" for e in entries for r in e["resources"]):
            build_id = entries[0]["build_id"]
            break
        time.sleep(0.2)
    assert build_id, "the VM never started"
    time.sleep(2)
    started = time.monotonic()
    up.send_signal(signal.SIGINT)
    _out, err = up.communicate(timeout=240)
    assert up.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert time.monotonic() - started < 120
    assert leftovers(env, build_id) == NOTHING
    assert not path.exists()
