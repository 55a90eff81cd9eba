"""The spec's own image tests, run against the fresh boot: pytest-testinfra files through
an ssh config imgpipe writes (the pinned host key, never the operator's ~/.ssh/config),
and Ansible plays with assert tasks. Reports go under logs/<target>/verify/."""

from __future__ import annotations

import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from imgpipe.core.context import TargetContext
from imgpipe.core.ssh import SSHEndpoint, close_control_masters, ssh_path_option
from imgpipe.errors import CommandError, ImgpipeError, run_command

HOST_ALIAS = "imgpipe-test-boot"


@dataclass(frozen=True)
class TestFailure:
    test: str
    message: str

    def __str__(self) -> str:
        return f"{self.test}: {self.message}"


def write_ssh_config(path: Path, ep: SSHEndpoint, control_dir: Path) -> None:
    """The only ssh config testinfra's ssh backend reads (`-F`): pinned host key, the test
    key only, one shared connection."""
    lines = [
        f"Host {HOST_ALIAS}",
        f"  HostName {ep.host}",
        f"  Port {ep.port}",
        f"  User {ep.user}",
        f"  {ssh_path_option('IdentityFile', ep.private_key).replace('=', ' ', 1)}",
        "  IdentitiesOnly yes",
        f"  {ssh_path_option('UserKnownHostsFile', ep.known_hosts).replace('=', ' ', 1)}",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ControlMaster auto",
        "  ControlPersist 60s",
        f"  {ssh_path_option('ControlPath', control_dir / '%C').replace('=', ' ', 1)}",
    ]
    path.write_text("\n".join(lines) + "\n")


def junit_failures(junit: Path) -> list[TestFailure]:
    """Each failed or erroring test case with the first line of its assertion."""
    if not junit.is_file():
        return []
    failures = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            text = (bad.get("message") or bad.text or "").strip().splitlines()
            name = "::".join(filter(None, [case.get("classname"), case.get("name")]))
            failures.append(TestFailure(name, text[0] if text else bad.tag))
    return failures


def run_testinfra(
    ctx: TargetContext, ep: SSHEndpoint, files: list[Path], report_dir: Path
) -> list[TestFailure]:
    """Run the testinfra files; return their failures (empty: all passed). The pytest output
    and JUnit XML are kept in `report_dir`."""
    config = ctx.workdir / "test-boot" / "ssh_config"
    control_dir = Path(tempfile.mkdtemp(prefix="imgpipe-tb-"))  # ControlPath sockets need a short path
    ctx.resources.track("test-boot", close_control_masters, path=str(control_dir))
    write_ssh_config(config, ep, control_dir)
    junit = report_dir / "testinfra.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--rootdir={ctx.loaded.directory}",
        f"--hosts=ssh://{HOST_ALIAS}",
        f"--ssh-config={config}",
        *(["--sudo"] if ep.user != "root" else []),  # tests see the machine as root does
        f"--junitxml={junit}",
        "-rfE",
        *map(str, files),
    ]
    timeout = ctx.loaded.spec.verify.timeout_s
    try:
        output = run_command(argv, timeout=timeout, cancel=ctx.cancel)
        failures: list[TestFailure] = []
    except CommandError as exc:
        output = exc.output
        failures = junit_failures(junit) or [TestFailure("pytest", f"exited with {exc.returncode}")]
    (report_dir / "testinfra.log").write_text(ctx.redact.text(output))
    return failures


def run_playbooks(
    ctx: TargetContext, ep: SSHEndpoint, playbooks: list[Path], report_dir: Path
) -> list[TestFailure]:
    """Run the verify plays (assert tasks) like provisioning, with their own Ansible session."""
    from imgpipe.provision import AnsibleSession

    session = AnsibleSession(
        ctx, ep, data_dir="test-boot/ansible", log_dir=report_dir, timeout_s=ctx.loaded.spec.verify.timeout_s
    )
    plays = [{"import_playbook": str(path.resolve())} for path in playbooks]
    extravars = {"imgpipe_build": {"id": ctx.build_id, "target": ctx.target, "spec": ctx.loaded.spec.name}}
    try:
        session.run("verify", plays, extravars, team="config")
    except ImgpipeError as exc:
        if ctx.cancel.is_set():
            raise
        return [TestFailure("playbooks", exc.message.removeprefix("verify failed: "))]
    return []
