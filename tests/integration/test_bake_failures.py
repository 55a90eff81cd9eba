"""A failing task, Ctrl-C or SIGTERM leaves no image, domain, overlay or journal
entry; --on-error abort keeps the VM reachable until `imgpipe gc --build`."""

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe

SPEC = """\
imgpipe: 1
name: ext
provision:
  roles_path: [{roles_dir}]
  roles:
{roles}
targets:
  local: {{builder: libvirt, disk_gb: 4}}
"""


def spec_with(tmp_path, roles_dir, *roles):
    text = SPEC.format(roles_dir=roles_dir, roles="\n".join(f"    - {r}" for r in roles))
    return write(tmp_path / "spec.yml", text)


def test_failing_task_names_task_and_role_and_leaves_nothing(
    imgpipe_env, base_image, outside_roles, tmp_path
):
    spec = spec_with(tmp_path, outside_roles, "marker", "failing")
    proc = run_imgpipe(imgpipe_env, "bake", str(spec), "--output", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "task 'Fail on purpose' in role 'failing' failed on local: the team role refuses" in proc.stderr
    assert "Traceback" not in proc.stderr
    build = build_dir_from(proc.stdout)
    assert list(build.glob("*.qcow2")) == [] and list(build.glob(".*.partial")) == []
    assert json.loads((build / "manifest.json").read_text())["builds"] == []
    assert leftovers(imgpipe_env, build.name) == NOTHING


@pytest.mark.parametrize(
    "signum,when",
    [(signal.SIGINT, "task sleeper : Sleep for a long time"), (signal.SIGTERM, "boot_to_ssh ...")],
    ids=["ctrl-c-during-provisioning", "sigterm-during-boot"],
)
def test_interrupt_cleans_up(imgpipe_env, base_image, outside_roles, tmp_path, signum, when):
    spec = spec_with(tmp_path, outside_roles, "sleeper")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgpipe.cli", "bake", str(spec), "--output", str(out)],
        env=imgpipe_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    deadline = time.monotonic() + 900
    for line in proc.stderr:
        seen.append(line)
        if when in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        pytest.fail(f"bake ended before {when!r}:\n" + "".join(seen))
    time.sleep(2)
    proc.send_signal(signum)
    rest_out, rest_err = proc.communicate(timeout=180)
    assert proc.returncode == 130, rest_err
    assert "interrupted" in rest_err and "Traceback" not in rest_err
    (build,) = list((out / "ext").iterdir())
    assert list(build.glob("*.qcow2")) == [] and list(build.glob(".*.partial")) == []
    assert leftovers(imgpipe_env, build.name) == NOTHING


def test_on_error_abort_keeps_vm_reachable_until_gc(imgpipe_env, base_image, outside_roles, tmp_path):
    spec = spec_with(tmp_path, outside_roles, "failing")
    proc = run_imgpipe(
        imgpipe_env, "bake", str(spec), "--output", str(tmp_path / "out"), "--on-error", "abort"
    )
    assert proc.returncode == 1
    build = build_dir_from(proc.stdout)
    reach = next(line for line in proc.stderr.splitlines() if "reach it:" in line)
    ssh = shlex.split(reach.split("reach it:", 1)[1])
    assert "StrictHostKeyChecking=yes" in ssh
    assert f"imgpipe gc --build {build.name}" in proc.stderr
    assert leftovers(imgpipe_env, build.name)["domains"] == [f"imgpipe-{build.name}-local"]
    inside = subprocess.run([*ssh, "cat", "/etc/hostname"], capture_output=True, text=True, timeout=120)
    assert inside.returncode == 0, inside.stderr
    for dry in (["gc", "--dry-run"], ["gc", "--build", build.name, "--dry-run"]):
        listed = run_imgpipe(imgpipe_env, *dry)
        assert listed.returncode == 0, listed.stderr
        assert f"build {build.name} target local" in listed.stdout, listed.stdout
        assert f"imgpipe-{build.name}-local" in listed.stdout or "kept" in listed.stdout
        assert leftovers(imgpipe_env, build.name)["domains"] == [f"imgpipe-{build.name}-local"], dry
    gc = run_imgpipe(imgpipe_env, "gc", "--build", build.name)
    assert gc.returncode == 0, gc.stderr
    assert leftovers(imgpipe_env, build.name) == NOTHING


def test_missed_power_off_fails_the_target_and_ships_nothing(
    imgpipe_env, base_image, outside_roles, tmp_path
):
    spec = write(
        tmp_path / "spec.yml",
        f"""\
imgpipe: 1
name: stuck
provision:
  roles_path: [{outside_roles}]
  roles: [no_poweroff]
seal: {{enabled: false}}
targets:
  local: {{builder: libvirt, disk_gb: 4, shutdown_timeout_s: 10}}
""",
    )
    proc = run_imgpipe(imgpipe_env, "bake", str(spec), "--output", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert "did not power off within 10 s" in proc.stderr and "console tail" in proc.stderr
    assert "Traceback" not in proc.stderr
    build = build_dir_from(proc.stdout)
    assert list(build.glob("*.qcow2")) == [] and list(build.glob(".*.partial")) == []
    assert json.loads((build / "manifest.json").read_text())["builds"] == []
    assert leftovers(imgpipe_env, build.name) == NOTHING


def test_sigterm_during_the_bootstrap_stops_mmdebstrap_and_leaves_nothing(imgpipe_env, tmp_path):
    """A cold cache: the bake bootstraps its base (a minute of mmdebstrap). SIGTERM ends
    it within moments: mmdebstrap and its apt children are stopped, no half-made base."""
    cache = tmp_path / "cold cache"
    spec = write(tmp_path / "spec.yml", "imgpipe: 1\nname: cold\ntargets:\n  local: {builder: libvirt}\n")
    env = {**imgpipe_env, "IMGPIPE_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgpipe.cli", "bake", str(spec), "--output", str(tmp_path / "out")],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if re.search(r"mmdebstrap \S+ into", line):
            break
    else:
        pytest.fail("the bake never started mmdebstrap")
    time.sleep(3)
    assert _processes_under(cache), "mmdebstrap is not running"
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 25  # mmdebstrap gets SIGTERM and cleans up its chroot
    assert _processes_under(cache) == []
    assert [p.name for p in (cache / "bases").iterdir() if p.suffix != ".lock"] == []  # no base, no work dir


def _processes_under(path) -> list[str]:
    """Command lines that mention `path` (mmdebstrap and its children name the tree)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found
