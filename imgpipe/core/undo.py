"""The undo stack: every change a build or a publish makes pushes its undo the moment it
is made; a failure or an interrupt runs the undos newest first, and a success commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgpipe.journal import Resources


def describe_failure(exc: BaseException) -> str:
    """One line for a failed undo: the exception's type and text (a cloud SDK's error
    names its code and operation there)."""
    return f"{type(exc).__name__}: {exc}"


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
        """The work succeeded: forget the undos and hand the resources over to the user."""
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
                failures.append(f"{what}: {describe_failure(exc)}")
                continue
            if journal_id is not None and self.resources is not None:
                self.resources.release(journal_id)
        return failures
