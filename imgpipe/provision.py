"""Apply roles and playbooks to the build VM with ansible-runner over pinned SSH.
A failed run is a status plus events; we turn it into one ProvisionError that
names host, role, task and message."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from imgpipe.core.context import TargetContext
from imgpipe.core.ssh import SSHEndpoint, close_control_masters, ssh_path_option
from imgpipe.errors import Interrupted, ProvisionError, SpecError
from imgpipe.journal import remove_path
from imgpipe.roles import roles_path
from imgpipe.shipped import shipped_dir
from imgpipe.spec.load import LoadedSpec


def provision_playbook(loaded: LoadedSpec, target: str) -> list[dict[str, Any]] | None:
    """The play imgpipe generates from the spec: roles in order, then the spec's playbooks."""
    prov = loaded.spec.provision
    plays: list[dict[str, Any]] = []
    if prov.roles:
        plays.append(
            {
                "name": f"imgpipe provision {loaded.spec.name} ({target})",
                "hosts": "all",
                "gather_facts": True,
                "roles": [
                    {"role": ref.role, **({"vars": dict(ref.vars)} if ref.vars else {})}
                    for ref in prov.role_refs()
                ],
            }
        )
    for playbook in prov.playbooks:
        plays.append({"import_playbook": str((loaded.directory / playbook).resolve())})
    return plays or None


def syntax_check(loaded: LoadedSpec) -> None:
    """ansible-playbook --syntax-check over what a bake would run. Roles from a
    requirements file exist only at bake time, so such specs are checked then."""
    plays = provision_playbook(loaded, "check")
    if not plays or loaded.spec.provision.requirements:
        return
    from imgpipe.ansible_options import invocation

    with tempfile.TemporaryDirectory(prefix="imgpipe-check-") as tmp:
        playbook = Path(tmp) / "provision.yml"
        playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
        team = invocation(loaded, Path(tmp) / "private")  # as the bake will run it
        env = {
            **os.environ,
            **team.env,
            "PATH": _venv_path(),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_ROLES_PATH": os.pathsep.join(str(p) for p in roles_path(loaded)),
            "ANSIBLE_LOCAL_TEMP": tmp,
            "ANSIBLE_HOME": tmp,
        }
        proc = subprocess.run(
            ["ansible-playbook", "--syntax-check", *team.args, "-i", "localhost,", str(playbook)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if proc.returncode != 0:
        detail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise SpecError(f"{loaded.path}: Ansible syntax check failed:\n{detail}")


def _venv_path() -> str:
    """ansible-playbook lives beside this Python; an unactivated venv has it off PATH."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


BUILD_GROUP = "default"  # Packer's name for the build host: playbooks written for it say `hosts: default`


def inventory(target: str, ep: SSHEndpoint) -> dict[str, Any]:
    """One host named after the target, in the group `default` (as Packer's playbooks
    expect), reached with the pinned host key and no ssh config but ours. Ansible splits
    the common args like a shell, so paths (which may hold spaces) are quoted."""
    pinned = " ".join(
        [
            "-F /dev/null",
            "-o",
            shlex.quote(ssh_path_option("UserKnownHostsFile", ep.known_hosts)),
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o ConnectTimeout=15",
        ]
    )
    host: dict[str, Any] = {
        "ansible_host": ep.host,
        "ansible_port": ep.port,
        "ansible_user": ep.user,
        "ansible_ssh_private_key_file": str(ep.private_key),
        "ansible_ssh_common_args": pinned,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if ep.user != "root":
        host["ansible_become"] = True  # roles run as root, as they would over a root login
    return {"all": {"hosts": {target: host}, "children": {BUILD_GROUP: {"hosts": {target: None}}}}}


class _Progress:
    """Turns runner events into task progress and remembers the first real failure."""

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self.failure: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> bool:
        kind, data = event.get("event"), event.get("event_data", {})
        if kind == "playbook_on_task_start":
            self.ctx.emit("task", role=data.get("role") or "", task=data.get("task") or "")
        elif (
            kind in ("runner_on_failed", "runner_on_unreachable")
            and not data.get("ignore_errors")
            and self.failure is None
        ):
            self.failure = {"kind": kind, **data}
        return True


def _failure_message(failure: dict[str, Any]) -> str:
    res = failure.get("res") or {}
    msg = res.get("msg") or res.get("stderr") or res.get("stdout") or "failed"
    role = failure.get("role") or "(playbook)"
    what = "unreachable" if failure["kind"] == "runner_on_unreachable" else "failed"
    return (
        f"task '{failure.get('task')}' in role '{role}' {what} on {failure.get('host')}: {str(msg).strip()}"
    )


class AnsibleSession:
    """One private data dir and SSH control socket dir per target, shared by its runs."""

    def __init__(
        self,
        ctx: TargetContext,
        endpoint: SSHEndpoint,
        *,
        data_dir: str = "ansible",
        log_dir: Path | None = None,
        timeout_s: int | None = None,
    ) -> None:
        self.ctx, self.endpoint = ctx, endpoint
        self.pdd = ctx.workdir / data_dir
        self.log_dir = log_dir or ctx.log_dir
        self.timeout_s = timeout_s if timeout_s is not None else ctx.loaded.spec.provision.timeout_s
        (self.pdd / "inventory").mkdir(parents=True, exist_ok=True)
        (self.pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory(ctx.target, endpoint)))
        # ControlPath sockets have a ~100 byte limit: keep them in a short /tmp dir.
        self.cp_dir = Path(tempfile.mkdtemp(prefix="imgpipe-cp-"))
        ctx.resources.track("ssh-control-dir", close_control_masters, path=str(self.cp_dir))
        self.installed_roles: Path | None = None
        self.collections = ctx.workdir / "galaxy" / "collections"
        if ctx.loaded.spec.provision.requirements:
            from imgpipe.requirements import install_requirements

            req = ctx.loaded.directory / ctx.loaded.spec.provision.requirements
            self.installed_roles, self.collections = install_requirements(req, ctx.workdir / "galaxy")

    def run(
        self, stage: str, plays: list[dict[str, Any]], extravars: dict[str, Any], *, team: str = "none"
    ) -> None:
        """Run `plays`. `team`: which of the spec's `provision.ansible` options apply:
        "all" (provisioning), "config" (its ansible.cfg and vault password: the spec's own
        verify playbooks), "none" (imgpipe's plays: the seal runs whole, whatever the tags)."""
        import ansible_runner

        from imgpipe.ansible_options import AnsibleInvocation, empty_config, invocation

        playbook = self.pdd / "project" / f"{stage}.yml"
        playbook.parent.mkdir(parents=True, exist_ok=True)
        playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
        progress = _Progress(self.ctx)
        timeout = self.timeout_s
        self._write_extravars(extravars)
        options = AnsibleInvocation({"ANSIBLE_CONFIG": str(empty_config(self.pdd / "env"))})
        if team != "none":  # a vault password file goes in env/, removed with the run below
            options = invocation(self.ctx.loaded, self.pdd / "env")
        args = options.args if team == "all" else []
        try:
            runner = ansible_runner.run(
                private_data_dir=str(self.pdd),
                playbook=str(playbook),
                ident=stage,
                inventory=str(self.pdd / "inventory" / "hosts.yml"),
                roles_path=[str(p) for p in roles_path(self.ctx.loaded, self.installed_roles)],
                envvars={**options.env, **self._env()},  # imgpipe's settings win over the team's
                cmdline=shlex.join(args) if args else None,
                quiet=True,
                event_handler=progress,
                cancel_callback=self.ctx.cancel.is_set,
                timeout=timeout,
            )
            log = self.pdd / "artifacts" / stage / "stdout"
            if log.is_file():
                copy = self.log_dir / f"ansible-{stage}.log"
                copy.write_text(self.ctx.redact.text(log.read_text(errors="replace")))
        finally:
            # Values (sensitive ones too) sit in extravars and the run's artifacts:
            # gone as soon as the run is, even when the VM is kept for debugging.
            remove_path(str(self.pdd / "env"))
            remove_path(str(self.pdd / "artifacts"))
        if runner.status == "successful":
            return
        if runner.status == "canceled" or self.ctx.cancel.is_set():
            raise Interrupted(f"{stage} interrupted")
        if runner.status == "timeout":
            raise ProvisionError(f"{stage} timed out after {timeout} s on target {self.ctx.target}")
        detail = (
            _failure_message(progress.failure)
            if progress.failure
            else (f"ansible-playbook exited with {runner.rc}")
        )
        raise ProvisionError(
            f"{stage} failed: {detail}",
            hint=f"full Ansible log: {self.log_dir / f'ansible-{stage}.log'}",
        )

    def _write_extravars(self, extravars: dict[str, Any]) -> None:
        """ansible-runner reads env/extravars and passes it as -e @file: values never
        reach a command line. Written 0600 from the start."""
        path = self.pdd / "env" / "extravars"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(extravars, fh)

    def _env(self) -> dict[str, str]:
        return {
            "PATH": _venv_path(),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.cp_dir),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.pdd / "tmp"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
        }


def seal_plays(ctx: TargetContext) -> list[dict[str, Any]]:
    return [{"import_playbook": str(shipped_dir("playbooks") / "seal.yml")}]
