"""The error hierarchy. Every error a user can cause or meet is one of these,
carrying a message and a hint; the CLI renders them, core code never prints."""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Sequence


class ImgpipeError(Exception):
    """Base of every error imgpipe reports to a user (exit code 1 unless overridden)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class SpecError(ImgpipeError):
    """Bad input: spec, var file or flag. Carries one or more located problems."""

    exit_code = 2


class BuildError(ImgpipeError):
    """A build step failed (VM, disk, capture)."""


class ProvisionError(BuildError):
    """Ansible failed on the build VM; names host, role, task and message."""


class VerifyError(BuildError):
    """The captured image failed its tests on a fresh boot: names each failing test or check."""


class PublishError(ImgpipeError):
    """Publishing an image failed and what it had created was rolled back.

    Names the step (tag, copy, wait, share, ssm, upload, import, register), the region and
    the AWS error code, so a user can search for the code."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        step: str = "",
        region: str = "",
        code: str = "",
    ) -> None:
        super().__init__(message, hint)
        self.step = step
        self.region = region
        self.code = code


class Interrupted(ImgpipeError):
    """The user pressed Ctrl-C or the process got SIGTERM."""

    exit_code = 130


class CommandError(BuildError):
    """An external command failed: report its exact command line and exit code."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str = "") -> None:
        tail = "\n".join(output.strip().splitlines()[-15:])
        msg = f"command failed with exit code {returncode}: {shlex.join(argv)}"
        if tail:
            msg += f"\n{tail}"
        super().__init__(msg)
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output


def run_command(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    input: bytes | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """Run a command to completion; raise CommandError (with its output tail) on failure.
    With `cancel`, a long command (a bootstrap) ends within moments of Ctrl-C or SIGTERM:
    its whole process group is stopped and Interrupted raised."""
    if cancel is not None:
        return _run_cancellable(argv, timeout, cancel)
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_installed(argv) from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"command timed out after {timeout} s: {shlex.join(argv)}") from exc
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, out)
    return out


def _not_installed(argv: Sequence[str]) -> BuildError:
    return BuildError(f"{argv[0]} is not installed", hint="run ./run once to install system packages")


def _run_cancellable(argv: Sequence[str], timeout: float | None, cancel: threading.Event) -> str:
    import os
    import signal
    import tempfile
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise _not_installed(argv) from exc
        while proc.poll() is None:
            stop = cancel.wait(0.2)
            if stop or (deadline is not None and time.monotonic() > deadline):
                os.killpg(proc.pid, signal.SIGTERM)  # mmdebstrap unmounts its chroot on SIGTERM
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                if stop:
                    raise Interrupted(f"interrupted: {argv[0]}")
                raise BuildError(f"command timed out after {timeout} s: {shlex.join(argv)}")
        output.seek(0)
        out = output.read().decode(errors="replace")
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, out)
    return out


def as_imgpipe_error(exc: BaseException) -> ImgpipeError:
    """Any failure as one reportable error: an interrupt is Interrupted (exit 130), an
    unexpected exception a BuildError naming its type."""
    if isinstance(exc, ImgpipeError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted("interrupted")
    return BuildError(f"unexpected {type(exc).__name__}: {exc}")
