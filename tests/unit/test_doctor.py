"""`imgpipe doctor`: each check against a broken host simulated honestly (a PATH without
qemu, a stub that prints a version, a /dev/kvm stand-in with real modes and owners opened
by a real unprivileged user, an unreachable catalog, a libvirt socket that isn't there),
then the command itself on this host and on a broken one."""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from imgpipe.aws.session import AwsSettings
from imgpipe.builders.libvirt_domain import Accelerator, probe_accelerator
from imgpipe.cli_doctor import render
from imgpipe.doctor import Check, Host, Report, Status, checks, kvm, run_doctor
from imgpipe.doctor.run import Needs, Step, _run_all, load_specs, plan
from tests.conftest import IMGPIPE, REPO, write

GiB = checks.GiB
SECRET = "s3cr3t-Pa55"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="changes a file's group / runs a check as another user")

LIBVIRT_SPEC = "imgpipe: 1\nname: web\ntargets:\n  local:\n    builder: libvirt\n"
AWS_SPEC = (
    "imgpipe: 1\nname: web\ntargets:\n  ec2:\n    builder: aws\n    source_ami: ami-0123456789abcdef0\n"
)


def stub(bindir: Path, name: str, script: str) -> Path:
    path = write(bindir / name, f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


# --- the Check model and its views ---------------------------------------------------------------


def test_json_envelope_and_text_lines_are_pinned():
    report = Report(
        (
            Check("libvirtd", Status.ok, "qemu:///system, libvirt 9.0.0"),
            Check("disk", Status.warn, "9.0 GiB free in /c", "free space"),
            Check("qemu-img", Status.fail, "not found on PATH", "apt-get install qemu-utils"),
        )
    )
    doc = report.to_json()
    assert set(doc) == {"v", "checks", "ok"} and doc["v"] == 1 and doc["ok"] is False
    assert doc["checks"][0] == {
        "name": "libvirtd",
        "status": "ok",
        "detail": "qemu:///system, libvirt 9.0.0",
        "fix": None,
    }
    lines = render(report).splitlines()
    assert lines[0] == "ok   libvirtd  qemu:///system, libvirt 9.0.0"
    assert lines[1] == "warn disk      9.0 GiB free in /c -> fix: free space"
    assert lines[2] == "FAIL qemu-img  not found on PATH -> fix: apt-get install qemu-utils"
    assert lines[3].startswith("1 problem(s) would make a bake fail")
    assert Report(report.checks[:2]).ok  # warnings do not fail


# --- programs ------------------------------------------------------------------------------------


def test_program_missing_from_path_fails_with_the_package_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    found = checks.program(checks.QEMU_IMG, str(empty))
    assert found.status == Status.fail and "not found on PATH" in found.detail
    assert "apt-get install qemu-utils" in found.fix
    assert checks.program(checks.MMDEBSTRAP, str(empty), required=False).status == Status.warn


def test_program_version_comes_from_the_binary_found_on_path(tmp_path):
    bindir = tmp_path / "bin"
    exe = stub(bindir, "qemu-img", 'echo "qemu-img version 6.1.3 (stub)"; echo "Copyright"')
    found = checks.program(checks.QEMU_IMG, str(bindir))
    assert found.status == Status.ok and found.detail == f"6.1.3 ({exe})"
    stub(bindir, "mmdebstrap", "echo mmdebstrap 1.4.0")
    assert checks.program(checks.MMDEBSTRAP, str(bindir)).detail.startswith("1.4.0 ")


def test_a_program_that_fails_its_version_call_is_a_fail(tmp_path):
    bindir = tmp_path / "bin"
    stub(bindir, "qemu-system-x86_64", 'echo "error while loading shared libraries" >&2; exit 127')
    found = checks.program(checks.QEMU_SYSTEM, str(bindir))
    assert found.status == Status.fail and "exit 127" in found.detail and "shared libraries" in found.detail
    assert "reinstall qemu-system-x86" in found.fix


def test_ansible_is_importable_here_with_versions():
    found = checks.ansible()
    assert found.status == Status.ok, found
    assert "ansible-core " in found.detail and "ansible-runner " in found.detail


# --- disk ----------------------------------------------------------------------------------------


def test_disk_thresholds_decide_fail_warn_ok_and_say_how_much(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    failing = checks.disk_space(tmp_path, fail_below=free + GiB, warn_below=free + 2 * GiB)
    assert failing.status == Status.fail
    assert f"{free / GiB:.1f} GiB free in {tmp_path}" in failing.detail and "IMGPIPE_CACHE_DIR" in failing.fix
    warning = checks.disk_space(tmp_path, fail_below=0, warn_below=free + GiB)
    assert warning.status == Status.warn
    assert checks.disk_space(tmp_path, fail_below=0, warn_below=0).status == Status.ok


def test_disk_defaults_to_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    assert f"free in {tmp_path / 'cache'}" in checks.disk_space(fail_below=0, warn_below=0).detail


# --- /dev/kvm ------------------------------------------------------------------------------------


def test_kvm_missing_is_a_warning_naming_tcg(tmp_path):
    found = kvm.kvm_device(tmp_path / "kvm")
    assert found.status == Status.warn and "missing" in found.detail and "TCG" in found.detail
    assert kvm.vm_start(tmp_path / "kvm").status == Status.ok  # nothing for libvirtd to re-probe


def _world_readable_dir() -> Path:
    """A directory an unprivileged user can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="doctor-kvm-"))
    path.chmod(0o755)
    return path


def _kvm_device_as_nobody(path: Path) -> dict[str, str]:
    """kvm_device() in a forked child that dropped to nobody (uid/gid 65534, no groups)."""
    # once as root first: any module it imports lazily is loaded before the child, as nobody,
    # could not read it (the interpreter may live under root's 0700 home)
    json.dumps(kvm.kvm_device(path).to_json())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(kvm.kvm_device(path).to_json()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(text)  # type: ignore[no-any-return]


@needs_root
def test_kvm_not_openable_by_the_user_is_a_warning_with_who_may():
    """A mode-000 stand-in opened by a real unprivileged user (root would open anything)."""
    where = _world_readable_dir()
    try:
        device = write(where / "kvm", "")
        device.chmod(0)
        found = _kvm_device_as_nobody(device)
        assert found["status"] == "warn"
        assert "root:root 0000" in found["detail"] and "not usable by nobody (uid 65534)" in found["detail"]
        assert "Permission denied" in found["detail"] and "chmod 660" in found["fix"]
        kvm_gid = grp.getgrnam("kvm").gr_gid
        os.chown(device, 0, kvm_gid)
        device.chmod(0o660)
        found = _kvm_device_as_nobody(device)  # nobody is not in the group kvm
        assert found["status"] == "warn" and "usermod -aG kvm" in found["fix"]
    finally:
        shutil.rmtree(where)


def test_kvm_usable_by_this_user_is_ok(tmp_path):
    device = write(tmp_path / "kvm", "")
    device.chmod(0o600)
    found = kvm.kvm_device(device)
    assert found.status == Status.ok and "0600, usable by" in found.detail


def test_accelerator_says_tcg_and_why(tmp_path):
    device = write(tmp_path / "kvm", "")
    no_vmx = write(tmp_path / "cpuinfo", "flags\t\t: fpu vme de pse tsc msr hypervisor\n")
    vmx = write(tmp_path / "cpuinfo-vmx", "flags\t\t: fpu vme de pse tsc msr vmx hypervisor\n")
    found = kvm.accelerator(device, no_vmx)
    assert found.status == Status.warn and found.detail.startswith("TCG: the CPU shows no vmx/svm flag")
    assert "10x slower" in found.detail and "nested virtualization" in found.fix
    assert kvm.accelerator(device, vmx).detail.startswith("KVM (vmx")
    missing = kvm.accelerator(tmp_path / "no-kvm", vmx)
    assert missing.status == Status.warn and f"TCG: {tmp_path / 'no-kvm'} missing" in missing.detail
    asked = kvm.accelerator(device, no_vmx, frozenset({"kvm"}))
    assert asked.status == Status.fail and "accelerator: kvm" in asked.detail
    assert kvm.accelerator(device, no_vmx, frozenset({"tcg"})).status == Status.ok


def test_accelerator_agrees_with_the_builders_probe_on_this_host():
    verdict = kvm.accelerator()
    assert (verdict.status == Status.ok) == (probe_accelerator(Accelerator.auto) == Accelerator.kvm)


@needs_root
def test_vm_start_flags_the_permissions_that_cost_a_minute_and_a_stale_libvirtd(tmp_path):
    device = write(tmp_path / "kvm", "")
    os.chown(device, 0, 0)
    device.chmod(0o600)  # as a host without udev leaves it (FACTS.md)
    slow = kvm.vm_start(device, lambda: None)
    assert slow.status == Status.warn and "root:root 0600" in slow.detail and "a minute" in slow.detail
    assert f"chgrp kvm {device} && chmod 660 {device}, then restart libvirtd" in slow.fix
    os.chown(device, 0, grp.getgrnam("kvm").gr_gid)
    device.chmod(0o660)  # what setup-host and udev do
    changed = device.stat().st_ctime
    assert kvm.vm_start(device, lambda: None).status == Status.ok
    assert kvm.vm_start(device, lambda: (4242, changed + 5)).status == Status.ok  # restarted after the fix
    stale = kvm.vm_start(device, lambda: (4242, changed - 60))
    assert stale.status == Status.warn and "pid 4242" in stale.detail and stale.fix == "restart libvirtd"
    device.chmod(0o666)  # world rw (some distributions) is as good
    assert kvm.vm_start(device, lambda: None).status == Status.ok


def test_libvirtd_start_time_read_from_proc(tmp_path):
    proc = tmp_path / "proc"
    write(proc / "stat", "cpu 1 2 3\nbtime 1700000000\n")
    write(proc / "1" / "comm", "init\n")
    write(proc / "1" / "stat", "1 (init) S " + "0 " * 30)
    fields = ["S"] + ["0"] * 18 + [str(100 * os.sysconf("SC_CLK_TCK"))] + ["0"] * 10
    write(proc / "77" / "comm", "libvirtd\n")
    write(proc / "77" / "stat", "77 (libvirt d) " + " ".join(fields))
    assert checks.libvirtd_started_at(proc) == (77, 1700000100.0)
    real = checks.libvirtd_started_at()
    assert real is None or real[1] <= time.time()


# --- libvirtd ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["test:///nonexistent-file", "qemu+unix:///system?socket=/nonexistent/libvirt-sock"]
)
def test_libvirtd_unreachable_is_a_fail_with_how_to_start_it(uri):
    found = checks.libvirtd(uri)
    assert found.status == Status.fail and found.detail.startswith(f"{uri}: cannot connect: ")
    assert "libvirtd -d" in found.fix


def test_libvirtd_reachable_reports_its_version():
    found = checks.libvirtd("test:///default")
    assert found.status == Status.ok and found.detail.startswith("test:///default, libvirt ")


# --- catalog -------------------------------------------------------------------------------------


def test_unreachable_catalog_fails_without_showing_its_password():
    url = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
    found = checks.catalog(url)
    assert found.status == Status.fail
    assert "127.0.0.1" in found.detail and "***" in found.detail
    assert SECRET not in found.detail + found.fix


def test_reachable_catalog_is_named(tmp_path):
    found = checks.catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert found == Check("catalog", Status.ok, f"sqlite:///{tmp_path / 'c.sqlite'}")


# --- AWS -----------------------------------------------------------------------------------------


@pytest.fixture
def no_aws(tmp_path, monkeypatch):
    """No AWS credentials anywhere boto3 looks (files, environment, instance metadata)."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return tmp_path


def test_aws_credentials_missing_is_a_fail(no_aws):
    found = checks.aws_credentials(AwsSettings(), "web target ec2")
    assert found.status == Status.fail and "no credentials found (needed by web target ec2)" in found.detail
    assert "AWS_PROFILE" in found.fix


def test_aws_credentials_say_where_from_never_what(no_aws, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADOCTORTESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    found = checks.aws_credentials(AwsSettings(), "web target ec2")
    assert found.status == Status.ok and "from environment variables" in found.detail
    assert "region eu-west-1" in found.detail
    assert "AKIADOCTORTESTKEY" not in json.dumps(found.to_json()) and SECRET not in json.dumps(
        found.to_json()
    )


def test_aws_credentials_from_a_named_profile(no_aws):
    write(
        no_aws / "aws-credentials",
        f"[team]\naws_access_key_id = AKIAPROFILEKEY\naws_secret_access_key = {SECRET}\n",
    )
    found = checks.aws_credentials(AwsSettings(profile="team"), "web publish ami")
    assert found.name == "aws:team" and found.status == Status.ok
    assert "from the shared credentials file, profile team" in found.detail and SECRET not in found.detail
    missing = checks.aws_credentials(AwsSettings(profile="nope"), "web publish ami")
    assert missing.status == Status.fail and "profile 'nope' not found" in missing.detail


# --- choosing and running checks -----------------------------------------------------------------


def test_specs_choose_the_checks(tmp_path):
    good, found = load_specs(
        [write(tmp_path / "local.yml", LIBVIRT_SPEC), write(tmp_path / "ec2.yml", AWS_SPEC)]
    )
    assert [c.status for c in good] == [Status.ok, Status.ok]
    assert found.local and found.bootstrap and list(found.uris) == ["qemu:///system"]
    assert [users[0] for _, users in found.aws.values()] == ["web target ec2"]
    _, aws_only = load_specs([tmp_path / "ec2.yml"])
    steps = {s.name: s.needed for s in plan(aws_only, None, Host())}
    assert steps["aws"] and steps["catalog"] and not steps["libvirtd"] and not steps["qemu-img"]
    assert not steps["mmdebstrap"]
    _, local_only = load_specs([tmp_path / "local.yml"])
    assert "aws" not in {s.name for s in plan(local_only, None, Host())}
    assert "aws" not in {s.name for s in plan(Needs.default(), None, Host())}


def test_an_image_source_does_not_need_mmdebstrap(tmp_path):
    spec = LIBVIRT_SPEC + "source:\n  image: {path: base.qcow2}\n"
    _, needs = load_specs([write(tmp_path / "img.yml", spec)])
    assert needs.local and not needs.bootstrap


def test_a_bad_spec_is_a_fail_line_with_its_located_error(tmp_path):
    bad = write(tmp_path / "bad.yml", LIBVIRT_SPEC.replace("libvirt", "libvrit"))
    found, needs = load_specs([bad, tmp_path / "missing.yml"])
    assert [c.status for c in found] == [Status.fail, Status.fail]
    assert f"{bad}:5:14: targets.local.builder: unknown builder 'libvrit'" in found[0].detail
    assert "did you mean 'libvirt'" in found[0].detail and "\n" not in found[0].detail
    assert "no such spec file" in found[1].detail
    assert not needs.uris


def test_a_broken_or_hanging_check_is_its_own_fail_line():
    def broken() -> Check:
        raise RuntimeError("boom")

    def hangs() -> Check:
        time.sleep(3)
        raise AssertionError("not reached")

    steps = [
        Step("broken", broken),
        Step("hangs", hangs),
        Step("fine", lambda: Check("fine", Status.ok, "yes")),
    ]
    started = time.monotonic()
    found = _run_all(steps, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert found[0] == Check("broken", Status.fail, "unexpected RuntimeError: boom")
    assert found[1] == Check("hangs", Status.fail, "no answer within 0.5 s")
    assert found[2].status == Status.ok


def test_unneeded_host_checks_only_warn(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    host = Host(path=str(empty), cache_dir=tmp_path, disk_fail_below=0, disk_warn_below=0)
    report = run_doctor(
        [write(tmp_path / "ec2.yml", AWS_SPEC)], f"sqlite:///{tmp_path / 'c.sqlite'}", host=host
    )
    qemu = next(c for c in report.checks if c.name == "qemu-img")
    assert qemu.status == Status.warn and qemu.detail.endswith("(not needed by the given specs)")
    everything_but_aws = [c for c in report.checks if not c.name.startswith("aws")]
    assert all(c.status != Status.fail for c in everything_but_aws), everything_but_aws


# --- the command ---------------------------------------------------------------------------------


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMGPIPE, "doctor", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def test_doctor_on_this_host_prints_one_readable_line_per_check():
    out = doctor()
    assert out.returncode in (0, 1), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert all(line.split(" ", 1)[0] in ("ok", "warn", "FAIL") for line in lines[:-1]), out.stdout
    names = [line[5:].split()[0] for line in lines[:-1]]
    for name in (
        "libvirtd",
        "/dev/kvm",
        "accelerator",
        "vm-start",
        "qemu-system-x86_64",
        "qemu-img",
        "catalog",
    ):
        assert name in names, out.stdout
    assert ("FAIL" in out.stdout) == (out.returncode == 1)
    as_json = json.loads(doctor("--json").stdout)
    assert set(as_json) == {"v", "checks", "ok"} and as_json["v"] == 1
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in as_json["checks"])


def test_doctor_on_a_broken_host_exits_1_and_names_the_fixes(tmp_path):
    empty = tmp_path / "bin"  # no qemu, no mmdebstrap (imgpipe itself runs from sys.executable)
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "IMGPIPE_CACHE_DIR": str(tmp_path / "cache")}
    out = doctor("--catalog", f"postgresql://u:{SECRET}@127.0.0.1:1/x", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr and SECRET not in out.stdout + out.stderr
    lines = {line[5:].split()[0]: line for line in out.stdout.splitlines()[:-1]}
    assert lines["qemu-img"].startswith("FAIL") and "fix: apt-get install qemu-utils" in lines["qemu-img"]
    assert "fix: apt-get install qemu-system-x86" in lines["qemu-system-x86_64"]
    assert "fix: apt-get install mmdebstrap" in lines["mmdebstrap"]
    assert lines["catalog"].startswith("FAIL") and "postgresql://u:***@127.0.0.1:1/x" in lines["catalog"]
    assert " -> fix: " in lines["catalog"]
    assert out.stdout.splitlines()[-1].startswith("4 problem(s) would make a bake fail")


def test_doctor_reports_a_bad_spec_and_the_aws_it_needs(tmp_path, no_aws):
    bad = write(tmp_path / "bad.yml", "imgpipe: 1\nname: [\n")
    good = write(tmp_path / "ec2.yml", AWS_SPEC)
    out = doctor(str(bad), str(good), "--json", env={**os.environ})
    assert out.returncode == 1, out.stderr
    found = json.loads(out.stdout)
    specs = [c for c in found["checks"] if c["name"] == "spec"]
    assert specs[0]["status"] == "fail" and f"{bad}:" in specs[0]["detail"] and "YAML" in specs[0]["detail"]
    assert specs[1]["status"] == "ok"
    aws = next(c for c in found["checks"] if c["name"] == "aws")
    assert aws["status"] == "fail" and "needed by web target ec2" in aws["detail"]
    assert found["ok"] is False
