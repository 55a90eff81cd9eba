"""What every AWS job (a publish, an import) carries, and how it fails: all or nothing,
each failing step a PublishError naming the step, the region and the AWS error code."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from imgpipe.aws.errors import fail_after_rollback, step
from imgpipe.core.cancel import sleep_unless_cancelled

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.core.undo import Rollback
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources


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
        sleep_unless_cancelled(self.cancel, seconds)

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
