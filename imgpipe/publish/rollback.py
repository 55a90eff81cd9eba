"""All-or-nothing publishing: every change a publish makes pushes its undo the moment
it is made; a failure or an interrupt runs the undos newest first, and each failing step
becomes a PublishError that names the step, the region and the AWS error code."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from imgpipe.aws.errors import error_code, error_message
from imgpipe.errors import BuildError, ImgpipeError, Interrupted, PublishError

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources


@contextmanager
def step(name: str, region: str, *, build: bool = False) -> Iterator[None]:
    """Turn any failure inside into PublishError(step=name, region=region, code=...), or a
    BuildError for a builder's step (`build`). ImgpipeErrors and interrupts pass through."""
    try:
        yield
    except ImgpipeError:
        raise
    except Exception as exc:
        code = error_code(exc)
        region = getattr(exc, "where", "") or region
        what = "build" if build else "publish"
        message = f"{what} step {name!r} failed in {region}: {code}: {error_message(exc)}"
        if build:
            raise BuildError(message, hint=_HINTS.get(code)) from exc
        raise PublishError(message, hint=_HINTS.get(code), step=name, region=region, code=code) from exc


_HINTS = {
    "UnauthorizedOperation": "the AWS identity lacks a permission: see the IAM policy in the README",
    "AccessDenied": "the AWS identity lacks a permission: see the IAM policy in the README",
    "AuthFailure": "check the AWS credentials (profile, environment, instance role)",
    "NoCredentialsError": "configure AWS credentials: a profile (aws.profile / AWS_PROFILE), "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role",
    "Timeout": "raise the wait's timeout setting, or look at the resource's state in the EC2 console",
    "InvalidAMIID.NotFound": "check source_ami and the region; AMIs are regional",
    "InsufficientInstanceCapacity": "try another instance_type or subnet (availability zone)",
    "RequestLimitExceeded": "AWS kept throttling: raise retry.max_attempts or use retry.mode: adaptive",
}


class Rollback:
    """An undo stack. `resources` (optional) is the build's on-disk journal: resources
    pushed with a journal cleaner are also written there, so `imgpipe gc` removes them
    after a kill -9 that left no chance to roll back."""

    def __init__(self, resources: Resources | None = None) -> None:
        self._undo: list[tuple[str, Callable[[], None], int | None]] = []
        self._on_commit: list[Callable[[], None]] = []
        self.resources = resources

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run `action` when the work is committed, before anything is handed over: if it
        raises, nothing is committed and the caller's failure path undoes everything."""
        self._on_commit.append(action)

    def push(
        self,
        what: str,
        undo: Callable[[], None],
        *,
        journal: tuple[str, Callable[..., None], dict[str, Any]] | None = None,
    ) -> None:
        """Remember how to undo `what`; `journal` = (kind, module-level cleaner, JSON args)."""
        journal_id = None
        if journal and self.resources is not None:
            kind, cleaner, args = journal
            journal_id = self.resources.track(kind, cleaner, **args)
        self._undo.append((what, undo, journal_id))

    def commit(self) -> None:
        """The publish succeeded: forget the undos and hand the resources over to the user."""
        while self._on_commit:
            self._on_commit.pop(0)()
        for _, _, journal_id in self._undo:
            if journal_id is not None and self.resources is not None:
                self.resources.release(journal_id)
        self._undo.clear()

    def run(self) -> list[str]:
        """Undo everything, newest first, going on past failures (a second Ctrl-C included).
        Returns what could not be undone; those stay in the journal for `imgpipe gc`."""
        failures = []
        self._on_commit.clear()
        while self._undo:
            what, undo, journal_id = self._undo.pop()
            try:
                undo()
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - report and go on
                failures.append(f"{what}: {error_code(exc)}: {error_message(exc)}")
                continue
            if journal_id is not None and self.resources is not None:
                self.resources.release(journal_id)
        return failures


def fail_after_rollback(exc: BaseException, failures: list[str], step_name: str) -> BaseException:
    """The exception to raise once a rollback ran: a PublishError that also lists what the
    rollback could not remove, or the interrupt itself (the CLI turns it into exit 130)."""
    left = "" if not failures else "\nrollback could not undo:\n  " + "\n  ".join(failures)
    if isinstance(exc, ImgpipeError):
        exc.message += left
        exc.args = (exc.message,)
        return exc
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        if failures:
            exc.add_note(left.strip())
        return exc
    code = error_code(exc)
    return PublishError(
        f"publish failed during {step_name}: {code}: {error_message(exc)}{left}", step=step_name, code=code
    )


class AwsJob:
    """What every AWS publishing job carries: a session, its settings, where progress
    goes, the journal for what it creates, the bake's `cancel` event (set on Ctrl-C and
    SIGTERM), and the sleep between polls: by default it ends at once when `cancel` is set
    and raises Interrupted, so a job waiting an hour for a copy stops within moments."""

    def __init__(
        self,
        session: AwsSession,
        settings: Any,
        *,
        emit: Emitter | None = None,
        resources: Resources | None = None,
        sleep: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.emit = emit
        self.resources = resources
        self.cancel = cancel or threading.Event()
        self.sleep = sleep or self._sleep_unless_cancelled
        self.step_name = "start"

    def _sleep_unless_cancelled(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Interrupted("interrupted")

    def _say(self, text: str) -> None:
        if self.emit is not None:
            self.emit.message(text)

    def _step(self, name: str, region: str) -> Any:
        self.step_name = name
        return step(name, region)

    def _roll_back_and_raise(self, exc: BaseException, rollback: Rollback, what: str) -> NoReturn:
        """Undo everything this job made, then raise: the original interrupt, or a
        PublishError naming the step (and any undo that failed)."""
        self._say(f"{what} failed at {self.step_name}; rolling back")
        raised = fail_after_rollback(exc, rollback.run(), self.step_name)
        if raised is exc:
            raise exc
        raise raised from exc
