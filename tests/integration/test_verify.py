"""The captured image is booted afresh and tested before anything is published: an image
whose seal was skipped fails the built-in checks, a failing testinfra test fails the
target, the report stays, and `--on-error abort` keeps the test VM until `gc --build`."""

import json
import shlex
import subprocess

from tests.conftest import write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe

SPEC = """\
imgpipe: 1
name: unsealed
provision:
  roles_path: [{roles}]
  roles: [marker]
seal: {{enabled: false}}
verify:
  testinfra: [test_image.py]
targets:
  local: {{builder: libvirt, disk_gb: 4}}
"""
TESTS = """\
def test_the_role_ran(host):
    assert host.file("/etc/team-marker").content_string == "from-team-role\\n"


def test_the_page(host):
    assert host.file("/var/www/html/index.html").exists, "no page to serve"
"""


def test_unsealed_image_and_failing_test_fail_the_target(imgpipe_env, base_image, outside_roles, tmp_path):
    spec = write(tmp_path / "spec.yml", SPEC.format(roles=outside_roles))
    write(tmp_path / "test_image.py", TESTS)
    proc = run_imgpipe(
        imgpipe_env, "bake", str(spec), "--output", str(tmp_path / "out"), "--on-error", "abort"
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # each failing test with its assertion, and each built-in check the unsealed image fails
    assert (
        "test_image::test_the_page[ssh://imgpipe-test-boot]: AssertionError: no page to serve" in proc.stderr
    )
    assert "test_the_role_ran" not in proc.stderr
    for check in ("machine_id", "build_key", "cloud_init", "hostname"):
        assert f"built-in check {check}: " in proc.stderr, check
    assert "built-in check shell_history" not in proc.stderr
    build = build_dir_from(proc.stdout)
    assert list(build.glob("*.qcow2")) == []  # no image, though the test VM still runs on its backing
    report = build / "logs" / "local" / "verify"
    assert "no page to serve" in (report / "testinfra.xml").read_text()
    checks = {c["name"]: c["outcome"] for c in json.loads((report / "checks.json").read_text())}
    assert checks["machine_id"] == "failed" and checks["ssh_host_keys"] == "passed"
    record = json.loads((build / "manifest.json").read_text())["imgpipe"]["targets"]["local"]
    assert record["ok"] is False and record["error"]

    # --on-error abort kept the test VM of the image, reachable with its pinned key
    reach = next(line for line in proc.stderr.splitlines() if "reach it:" in line)
    assert "test VM" in proc.stderr and "StrictHostKeyChecking=yes" in reach
    assert f"imgpipe-{build.name}-local-test" in leftovers(imgpipe_env, build.name)["domains"]
    ssh = shlex.split(reach.split("reach it:", 1)[1])
    inside = subprocess.run([*ssh, "cat", "/etc/team-marker"], capture_output=True, text=True, timeout=120)
    assert inside.stdout == "from-team-role\n", inside.stderr
    gc = run_imgpipe(imgpipe_env, "gc", "--build", build.name)
    assert gc.returncode == 0, gc.stderr
    assert leftovers(imgpipe_env, build.name) == NOTHING


def test_the_scaffolded_image_passes_its_scaffolded_test(imgpipe_env, base_image, tmp_path):
    project = tmp_path / "proj"
    init = run_imgpipe(imgpipe_env, "init", str(project), "--name", "starter")
    assert init.returncode == 0, init.stderr
    proc = run_imgpipe(imgpipe_env, "bake", str(project / "image.yml"), "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    build = build_dir_from(proc.stdout)
    record = json.loads((build / "manifest.json").read_text())["imgpipe"]["targets"]["local"]
    assert record["verify"]["ok"] and record["verify"]["tests"]["testinfra"] == ["tests/test_image.py"]
    assert set(record["verify"]["checks"].values()) == {"passed"}
    assert "1 passed" in (build / "logs" / "local" / "verify" / "testinfra.log").read_text()
    assert leftovers(imgpipe_env, build.name) == NOTHING
