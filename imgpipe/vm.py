"""`imgpipe vm up` / `vm down`: the build VM a bake would provision, kept running so a role
can be tested in it (the Molecule driver in molecule/ calls these). `up` starts a detached
supervisor (imgpipe/vm_supervisor.py) that launches the VM and holds it, because the VM's
package proxy is a thread of that process and the journal names it as the VM's owner.
`up` returns once the supervisor wrote the instance file; `down` asks the supervisor to
clean up through the journal, and falls back to the journal itself if it is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from imgpipe.errors import BuildError, ImgpipeError, Interrupted, SpecError
from imgpipe.paths import state_dir

INSTANCE_FORMAT = 1
STOP_TIMEOUT_S = 180.0  # the supervisor's cleanup: destroy the domain, end the tunnel, remove files


@dataclass(frozen=True)
class VmRequest:
    """What `vm up` asks its supervisor for. It travels on the supervisor's stdin, so no
    variable value (sensitive ones included) sits on a long-lived process's command line."""

    spec: Path
    target: str
    instance_file: Path
    var_files: tuple[Path, ...] = ()
    cli_vars: tuple[str, ...] = field(default=(), repr=False)

    @property
    def log_dir(self) -> Path:
        """Beside the instance file, kept after `vm down`: the supervisor's log, the console."""
        return self.instance_file.parent / f"{self.instance_file.stem}.logs"

    def to_json(self) -> str:
        return json.dumps(
            {
                "spec": str(self.spec),
                "target": self.target,
                "instance_file": str(self.instance_file),
                "var_files": [str(p) for p in self.var_files],
                "cli_vars": list(self.cli_vars),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> VmRequest:
        data = json.loads(text)
        return cls(
            spec=Path(data["spec"]),
            target=data["target"],
            instance_file=Path(data["instance_file"]),
            var_files=tuple(Path(p) for p in data.get("var_files", ())),
            cli_vars=tuple(data.get("cli_vars", ())),
        )


class Instance(BaseModel):
    """The instance file: how to reach a build VM that `vm up` left running (Molecule's
    instance config is made from it) and which supervisor holds it. Paths and public keys
    only; the private key stays in the build's 0700 work dir."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    imgpipe_vm: int = INSTANCE_FORMAT
    address: str
    port: int
    user: str
    identity_file: str
    known_hosts: str  # pins the VM's ed25519 host key
    host_key_fingerprint: str
    authorized_key: str  # the build key's public half (the seal removes it)
    host_keys: tuple[str, ...]  # public halves of every host key imgpipe injected
    build_id: str
    target: str
    spec: str
    journal_dir: str
    log_dir: str
    supervisor_pid: int
    supervisor_start: str

    def write(self, path: Path) -> None:
        """Atomically, mode 0600: a reader sees no file or a whole one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.model_dump_json(indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Instance:
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValidationError, ValueError) as exc:
            detail = str(exc).splitlines()[0]
            raise SpecError(
                f"{path}: not an imgpipe vm instance file ({detail})",
                hint="give the --instance-file that `imgpipe vm up` wrote, or remove this file",
            ) from None

    def ssh_command(self) -> list[str]:
        """ssh to the VM as imgpipe does: pinned host key, no ssh config but ours."""
        from imgpipe.core.ssh import SSHEndpoint

        return SSHEndpoint(
            self.address,
            self.port,
            self.user,
            Path(self.identity_file),
            Path(self.known_hosts),
            self.host_key_fingerprint,
            self.authorized_key,
        ).ssh_argv()


def process_start(pid: int) -> str | None:
    """The start time of a live process (a zombie counts as gone), or None: with the pid,
    it tells our supervisor from a process that reused its pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _is_vm_supervisor(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(a == "vm" and b == "serve" for a, b in zip(argv, argv[1:], strict=False))


def pick_target(targets: list[str], wanted: str | None, spec: Path) -> str:
    """The target to boot: the one named, or the spec's only one."""
    from imgpipe.spec.problems import suggestion

    if wanted is None:
        if len(targets) == 1:
            return targets[0]
        raise SpecError(f"{spec} has {len(targets)} targets ({', '.join(targets)}): choose one with --target")
    if wanted not in targets:
        raise SpecError(f"--target {wanted}: no such target{suggestion(wanted, targets)} in {spec}")
    return wanted


def up(request: VmRequest, progress: Callable[[str], None] | None = None) -> Instance:
    """Start the supervisor and return once the VM answers SSH with its pinned host key and
    the instance file is written. On failure, Ctrl-C or SIGTERM (as KeyboardInterrupt) the
    supervisor removes everything it made before this returns or raises."""
    _clear_stale(request.instance_file)
    request.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = request.log_dir / "supervisor.log"
    with open(log_path, "a") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "imgpipe.cli", "vm", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # neither the terminal's Ctrl-C nor Molecule's task end reaches it
        )
    build_id = None
    try:
        assert supervisor.stdin is not None and supervisor.stdout is not None
        supervisor.stdin.write(request.to_json())
        supervisor.stdin.close()
        for status in _status_lines(supervisor.stdout):
            event = status.get("event")
            if event == "started":
                build_id = status.get("build_id")
            elif event == "progress" and progress is not None:
                progress(str(status.get("text", "")))
            elif event == "ready":
                supervisor.stdout.close()  # it keeps running; later status lines go nowhere
                return Instance.model_validate(status["instance"])
            elif event == "failed":
                supervisor.wait()
                raise _failure(str(status.get("error")), int(status.get("exit_code", 1)))
        code = supervisor.wait()
        _collect(state_dir() / "journal", build_id)  # what a crashed supervisor made
        raise BuildError(
            f"imgpipe's build VM supervisor exited with code {code} before the VM was up\n{_tail(log_path)}",
            hint=f"its log: {log_path}",
        )
    except KeyboardInterrupt:
        _stop_child(supervisor)
        _collect(state_dir() / "journal", build_id)
        raise Interrupted("interrupted: the build VM and everything made for it were removed") from None


def _status_lines(stream: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stream:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def _failure(message: str, exit_code: int) -> ImgpipeError:
    err = ImgpipeError(message)
    err.exit_code = exit_code
    return err


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _stop_child(supervisor: subprocess.Popen[str]) -> None:
    """SIGTERM, then wait for the supervisor's own cleanup; a second Ctrl-C does not cut it short."""
    if supervisor.poll() is None:
        supervisor.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while supervisor.poll() is None and time.monotonic() < deadline:
        try:
            supervisor.wait(timeout=1)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue
    if supervisor.poll() is None:
        supervisor.kill()
        supervisor.wait()


def _clear_stale(instance_file: Path) -> None:
    if not instance_file.exists():
        return
    instance = Instance.read(instance_file)
    if process_start(instance.supervisor_pid) == instance.supervisor_start:
        raise SpecError(
            f"a build VM is already up for {instance_file} (build {instance.build_id})",
            hint=f"stop it first: imgpipe vm down --instance-file {instance_file}",
        )
    down(instance_file)  # its supervisor died: remove what the journal still holds


def down(instance_file: Path, timeout: float = STOP_TIMEOUT_S) -> str:
    """Stop the build VM an instance file names; nothing to do is fine (down twice)."""
    if not instance_file.exists():
        return f"no build VM is up for {instance_file}: nothing to stop"
    instance = Instance.read(instance_file)
    _stop_supervisor(instance.supervisor_pid, instance.supervisor_start, timeout)
    _collect(Path(instance.journal_dir), instance.build_id)
    instance_file.unlink(missing_ok=True)
    return f"build VM of build {instance.build_id} (target {instance.target}) is down"


def down_build(build_id: str, timeout: float = STOP_TIMEOUT_S) -> str:
    """Stop a build VM by its build id, found through the journal (its owner is the supervisor)."""
    from imgpipe.journal import journals

    journal_dir = state_dir() / "journal"
    entries = [o for o in journals(journal_dir) if o.record.get("build_id") == build_id]
    if not entries:
        return f"no journal entry for build {build_id}: nothing to stop"
    for entry in entries:
        pid, start = int(entry.record.get("pid", 0)), str(entry.record.get("pid_start"))
        if process_start(pid) == start and not _is_vm_supervisor(pid):
            raise SpecError(
                f"build {build_id} is a running bake (pid {pid}), not a build VM of `imgpipe vm up`",
                hint="stop the bake itself (Ctrl-C or SIGTERM); it removes its VM",
            )
        _stop_supervisor(pid, start, timeout)
    _collect(journal_dir, build_id)
    return f"build VM of build {build_id} is down"


def _stop_supervisor(pid: int, start: str, timeout: float) -> None:
    if process_start(pid) != start:
        return  # gone already (or its pid is someone else's now)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        raise BuildError(f"not allowed to stop the build VM's supervisor (pid {pid})") from None
    deadline = time.monotonic() + timeout
    while process_start(pid) == start and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_start(pid) == start:  # stuck: its journal still says what to remove
        os.kill(pid, signal.SIGKILL)
        while process_start(pid) == start:
            time.sleep(0.1)


def _collect(journal_dir: Path, build_id: str | None) -> None:
    """What a dead supervisor left in the journal (nothing after a clean stop)."""
    if build_id is None:
        return
    from imgpipe.journal import collect

    _removed, failures = collect(journal_dir, build_id)
    if failures:
        raise BuildError(
            f"could not remove everything of build {build_id}:\n" + "\n".join(f"  {f}" for f in failures),
            hint=f"retry with: imgpipe gc --build {build_id}",
        )
