"""`imgpipe vm up/down` without a VM: the instance file, the request, target choice, stopping
a supervisor (a stand-in process) and the journal fallback, and a supervisor whose launch
fails (libvirt unreachable) reporting one clear error and leaving nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgpipe.errors import SpecError
from imgpipe.journal import Resources, remove_path
from imgpipe.vm import Instance, VmRequest, down, down_build, pick_target, process_start
from tests.conftest import IMGPIPE, REPO, write


def instance(tmp_path: Path, **changes) -> Instance:
    fields = {
        "address": "127.0.0.1",
        "port": 40022,
        "user": "imgpipe-build",
        "identity_file": str(tmp_path / "build_key"),
        "known_hosts": str(tmp_path / "known_hosts"),
        "host_key_fingerprint": "SHA256:x",
        "authorized_key": "ssh-ed25519 AAAA build",
        "host_keys": ("ssh-ed25519 AAAB host",),
        "build_id": "20260101T000000Z-abcdef",
        "target": "local",
        "spec": str(tmp_path / "image.yml"),
        "journal_dir": str(tmp_path / "state" / "journal"),
        "log_dir": str(tmp_path / "vm.logs"),
        "supervisor_pid": 999999999,
        "supervisor_start": "1",
    }
    return Instance(**{**fields, **changes})


def run_imgpipe(*args, env=None, timeout=60):
    return subprocess.run(
        [*IMGPIPE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_request_travels_as_json_and_keeps_its_logs_beside_the_instance_file(tmp_path):
    request = VmRequest(
        tmp_path / "image.yml", "local", tmp_path / "vm" / "web.json", (tmp_path / "v.yml",), ("a=1",)
    )
    assert VmRequest.from_json(request.to_json()) == request
    assert request.log_dir == tmp_path / "vm" / "web.logs"
    assert "a=1" not in repr(request)  # a variable value may be sensitive


def test_instance_file_is_written_whole_and_private_and_reads_back(tmp_path):
    path = tmp_path / "eph" / "vm.json"
    written = instance(tmp_path)
    written.write(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Instance.read(path) == written
    assert json.loads(path.read_text())["identity_file"].endswith("build_key")
    assert [p.name for p in path.parent.iterdir()] == ["vm.json"]  # no temporary file left


def test_a_file_that_is_no_instance_file_is_one_clear_error(tmp_path):
    path = write(tmp_path / "vm.json", '{"address": "127.0.0.1"}')
    with pytest.raises(SpecError, match="not an imgpipe vm instance file"):
        Instance.read(path)


def test_ssh_command_pins_the_host_key_and_ignores_ssh_config(tmp_path):
    argv = instance(tmp_path).ssh_command()
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    assert "StrictHostKeyChecking=yes" in argv
    assert f'UserKnownHostsFile="{tmp_path / "known_hosts"}"' in argv


def test_target_is_the_named_one_or_the_only_one(tmp_path):
    spec = tmp_path / "image.yml"
    assert pick_target(["local"], None, spec) == "local"
    assert pick_target(["local", "ec2"], "ec2", spec) == "ec2"
    with pytest.raises(SpecError, match="choose one with --target"):
        pick_target(["local", "ec2"], None, spec)
    with pytest.raises(SpecError, match="did you mean 'local'"):
        pick_target(["local", "ec2"], "locl", spec)


def test_process_start_tells_a_live_process_from_a_gone_one():
    assert process_start(os.getpid())
    assert process_start(999999999) is None


def test_down_with_nothing_up_is_fine_twice(tmp_path):
    for _ in range(2):
        proc = run_imgpipe("vm", "down", "--instance-file", str(tmp_path / "none.json"))
        assert proc.returncode == 0, proc.stderr
        assert "nothing to stop" in proc.stdout


def test_down_wants_exactly_one_of_instance_file_and_build(tmp_path):
    for args in ([], ["--build", "b", "--instance-file", str(tmp_path / "x.json")]):
        proc = run_imgpipe("vm", "down", *args)
        assert proc.returncode == 2 and "exactly one" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_down_after_the_supervisor_died_removes_what_the_journal_holds(tmp_path):
    leftover = write(tmp_path / "overlay.qcow2", "disk")
    res = Resources(tmp_path / "state" / "journal", "20260101T000000Z-abcdef", "local")
    res.track("path", remove_path, path=str(leftover))
    record = json.loads(res.path.read_text())
    res.path.write_text(json.dumps({**record, "pid": 999999999}))  # its owner was killed
    path = tmp_path / "vm.json"
    instance(tmp_path).write(path)
    assert "is down" in down(path)
    assert not leftover.exists() and not res.path.exists() and not path.exists()


STAND_IN = """
import pathlib, signal, sys, time
def stop(*_):
    pathlib.Path(sys.argv[1]).write_text("cleaned up")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_down_asks_a_live_supervisor_to_clean_up_and_waits_for_it(tmp_path):
    marker = tmp_path / "marker"
    stand_in = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(marker)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stand_in.stdout.readline().strip() == "ready"
        path = tmp_path / "vm.json"
        instance(tmp_path, supervisor_pid=stand_in.pid, supervisor_start=process_start(stand_in.pid)).write(
            path
        )
        start = time.monotonic()
        down(path)
        assert marker.read_text() == "cleaned up" and not path.exists()
        assert time.monotonic() - start < 10
    finally:
        stand_in.kill()
        stand_in.wait()


def test_up_refuses_while_a_supervisor_holds_the_instance_file(tmp_path):
    path = tmp_path / "vm.json"
    instance(tmp_path, supervisor_pid=os.getpid(), supervisor_start=process_start(os.getpid())).write(path)
    proc = run_imgpipe("vm", "up", "examples/web.yml", "--instance-file", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "already up" in proc.stderr and "imgpipe vm down --instance-file" in proc.stderr


def test_down_by_build_id_never_stops_a_bake(tmp_path, isolated_state):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        res = Resources(isolated_state / "journal", "20260101T000000Z-b4ce00", "local")
        res.track("path", remove_path, path=str(tmp_path / "overlay.qcow2"))
        record = json.loads(res.path.read_text())
        res.path.write_text(
            json.dumps({**record, "pid": sleeper.pid, "pid_start": process_start(sleeper.pid)})
        )
        with pytest.raises(SpecError, match="not a build VM"):
            down_build("20260101T000000Z-b4ce00")
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_up_with_a_bad_spec_or_target_fails_before_starting_anything(tmp_path):
    proc = run_imgpipe("vm", "up", str(tmp_path / "missing.yml"), "--instance-file", str(tmp_path / "v.json"))
    assert proc.returncode == 2 and "no such spec file" in proc.stderr
    proc = run_imgpipe(
        "vm", "up", "examples/web.yml", "--target", "ec2", "--instance-file", str(tmp_path / "v.json")
    )
    assert proc.returncode == 2 and "no such target" in proc.stderr
    assert not (tmp_path / "v.logs").exists()


def test_a_launch_that_fails_is_one_error_and_leaves_nothing(tmp_path):
    """The supervisor really runs: source (a local image), keys, overlay, then libvirt is
    unreachable. `vm up` reports the builder's error, exits 1, and nothing stays."""
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1G"], check=True)
    spec = write(
        tmp_path / "image.yml",
        f"""\
imgpipe: 1
name: vmtest
source:
  image: {{path: {base}}}
targets:
  local:
    builder: libvirt
    uri: qemu+unix:///system?socket={tmp_path}/no-libvirtd.sock
""",
    )
    env = {
        **os.environ,
        "IMGPIPE_CACHE_DIR": str(tmp_path / "cache"),
        "IMGPIPE_STATE_DIR": str(tmp_path / "st"),
    }
    path = tmp_path / "eph" / "vm.json"
    proc = run_imgpipe("vm", "up", str(spec), "--instance-file", str(path), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot connect to libvirt" in proc.stderr and "Traceback" not in proc.stderr
    assert not path.exists()
    assert list((tmp_path / "st" / "journal").iterdir()) == []
    assert list((tmp_path / "cache" / "work").iterdir()) == []
    assert (tmp_path / "eph" / "vm.logs" / "supervisor.log").read_text().count("cleanup done")


def test_sigterm_to_a_stuck_supervisor_is_not_needed_twice(tmp_path):
    """`down` on an instance file whose pid now belongs to another process leaves it alone."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        path = tmp_path / "vm.json"
        instance(tmp_path, supervisor_pid=other.pid, supervisor_start="not-its-start").write(path)
        down(path)
        assert other.poll() is None and not path.exists()
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
