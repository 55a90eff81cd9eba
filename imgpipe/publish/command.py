"""`publisher: command`, Packer's shell-local post-processor: push an image where no plugin
goes (Glance, vSphere, Azure, an internal registry) with a command you already have.

The command gets the artifact as environment variables (IMGPIPE_ARTIFACT_PATH, _NAME,
_FORMAT, _SHA256, _KIND, _ID, IMGPIPE_BUILD_ID, IMGPIPE_TARGET, IMGPIPE_SPEC) and as a JSON
file (IMGPIPE_PUBLISH_JSON). Its last non-empty line on stdout is recorded as the
published id; a non-zero exit fails the target. `undo` names a command that takes the
publication back (IMGPIPE_PUBLISHED_ID set) when the target fails later; it is journaled,
so `imgpipe gc` runs it after a kill -9. Secrets reach the command through the
environment imgpipe runs in, never through its arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.core import IMAGE_FILE, Artifact, TargetContext
from imgpipe.core.artifact import AMI, CloudImage, ImageFile
from imgpipe.errors import Interrupted, PublishError
from imgpipe.publish.base import Publication

_STOP_GRACE_S = 10


class CommandSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    publisher: Literal["command"] = Field(description="Run a local command on the artifact (shell-local).")
    source: str = Field(alias="from", description="The target (or publisher) whose artifact it takes.")
    command: str | list[str] = Field(
        description="A shell line (run with sh -c) or an argv list; its last stdout line is the published id."
    )
    undo: str | list[str] | None = Field(
        None, description="Run when the target fails after this publisher ran (IMGPIPE_PUBLISHED_ID is set)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="More environment variables (not secrets).")
    workdir: Path = Field(Path("."), description="Where it runs, relative to the spec's directory.")
    timeout_s: int = Field(3600, ge=1, description="Seconds before it is stopped and the target fails.")


class CommandPublisher:
    Settings: ClassVar[type[BaseModel]] = CommandSettings
    publisher_type: ClassVar[str] = "imgpipe.command"
    accepts: ClassVar[frozenset[str]] = frozenset({IMAGE_FILE, AMI})
    produces: ClassVar[str | None] = None
    cloud_init_datasources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None:
        self.name, self.ctx = name, ctx
        self.settings: CommandSettings = settings  # type: ignore[assignment]

    def publish(self, artifact: Artifact) -> Publication:
        ctx, settings = self.ctx, self.settings
        facts = artifact_facts(artifact, ctx)
        log = ctx.log_dir / f"publish-{self.name}.log"
        with tempfile.TemporaryDirectory(prefix="imgpipe-command-") as tmp:
            facts_file = Path(tmp) / "artifact.json"
            facts_file.write_text(json.dumps(facts, indent=2))
            env = {**self._environment(facts), "IMGPIPE_PUBLISH_JSON": str(facts_file)}
            ctx.emit.message(f"publish {self.name}: running {_shown(settings.command)}")
            stdout = run_logged(settings.command, env, self._cwd(), log, settings.timeout_s, ctx)
        published = next((line.strip() for line in reversed(stdout.splitlines()) if line.strip()), "")
        if not published:
            raise PublishError(
                f"publisher {self.name}: the command printed nothing on stdout; its last line is the "
                f"published id (log: {log})",
                hint="print the id the image got where it went (an image id, a URL) as the last line",
            )
        if settings.undo is not None:
            env = {**self._environment(facts, with_os=False), "IMGPIPE_PUBLISHED_ID": published}
            args = {
                "command": settings.undo,
                "cwd": str(self._cwd()),
                "log": str(ctx.log_dir / f"publish-{self.name}-undo.log"),
            }
            # the journal (for gc after a kill -9) never holds a secret: such values are left out
            kept = {k: v for k, v in env.items() if ctx.redact.text(v) == v}
            ctx.undo.push(
                f"publication {published} by {self.name}",
                lambda: run_undo(env=env, **args),
                journal=("command-publication", run_undo, {**args, "env": kept}),
            )
        return Publication(self.name, self.publisher_type, published, {"command": _shown(settings.command)})

    def _environment(self, facts: dict[str, Any], with_os: bool = True) -> dict[str, str]:
        ours = {f"IMGPIPE_{key.upper()}": str(value) for key, value in facts.items() if value is not None}
        return {**(os.environ if with_os else {}), **self.settings.env, **ours}

    def _cwd(self) -> Path:
        return (self.ctx.loaded.directory / self.settings.workdir).resolve()


def artifact_facts(artifact: Artifact, ctx: TargetContext) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "build_id": ctx.build_id,
        "target": ctx.target,
        "spec": ctx.loaded.spec.name,
        "artifact_kind": artifact.kind,
        "artifact_id": artifact.artifact_id,
    }
    if isinstance(artifact, ImageFile):  # still under its partial name until the target succeeds
        facts |= {
            "artifact_path": str(artifact.partial),
            "artifact_name": artifact.name,
            "artifact_format": artifact.format,
            "artifact_sha256": artifact.sha256,
            "artifact_size": artifact.size,
        }
    elif isinstance(artifact, CloudImage):
        facts |= {"artifact_region": artifact.origin.region, "artifact_image_id": artifact.origin.image_id}
    return facts


def run_logged(
    command: str | list[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout_s: float,
    ctx: TargetContext | None = None,
) -> str:
    """Run to completion with stderr (and stdout) in `log`; returns stdout. Ctrl-C, SIGTERM
    or the timeout stop its whole process group; a non-zero exit is a PublishError."""
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    log.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryFile() as out, open(log, "ab") as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            raise PublishError(f"could not run {_shown(command)}: {exc}") from exc
        while proc.poll() is None:
            cancelled = ctx is not None and ctx.cancel.wait(0.2)
            if ctx is None:
                time.sleep(0.2)
            if cancelled or time.monotonic() > deadline:
                _stop(proc)
                if cancelled:
                    raise Interrupted(f"interrupted: {_shown(command)}")
                raise PublishError(f"{_shown(command)} timed out after {timeout_s:.0f} s (log: {log})")
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    redact = ctx.redact.text if ctx is not None else (lambda text: text)
    with open(log, "a") as err_text:
        err_text.write(redact(stdout))
    if proc.returncode != 0:
        tail = "\n".join(redact(log.read_text(errors="replace")).strip().splitlines()[-10:])
        raise PublishError(
            f"{_shown(command)} exited with {proc.returncode} (log: {log})" + (f"\n{tail}" if tail else ""),
            hint="the command's own output above says why",
        )
    return stdout


def run_undo(command: str | list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """The journaled undo of a command publication (also run by `imgpipe gc`). The
    environment imgpipe runs in now is the base, so secrets are never journaled."""
    run_logged(command, {**os.environ, **env}, Path(cwd), Path(log), timeout_s=3600)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _shown(command: str | list[str]) -> str:
    return command if isinstance(command, str) else " ".join(command)
