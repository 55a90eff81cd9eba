"""`--on-error ask`, as Packer's `-on-error=ask`: when a target fails, the person at the
terminal chooses: clean up, keep the VM to look at it (abort), or retry the failed stage
(provisioning after fixing a role, capture after freeing disk). Targets bake in parallel,
so one question is asked at a time."""

from __future__ import annotations

import select
import sys
import threading
from enum import StrEnum
from typing import TextIO

from imgpipe.errors import SpecError


class Choice(StrEnum):
    CLEANUP = "cleanup"
    ABORT = "abort"
    RETRY = "retry"


_ONE_QUESTION_AT_A_TIME = threading.Lock()


def require_terminal(stdin: TextIO | None = None) -> None:
    """`ask` needs someone to answer: without a terminal it is bad input, not a hang."""
    stdin = stdin or sys.stdin
    if not (stdin and stdin.isatty()):
        raise SpecError(
            "--on-error ask needs a terminal to ask on (stdin is not one)",
            hint="use --on-error cleanup or --on-error abort in scripts and CI",
        )


class TerminalAsker:
    """Asks on stderr and reads the answer from stdin (a terminal)."""

    def __init__(self, stdin: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdin, self.stderr = stdin or sys.stdin, stderr or sys.stderr

    def __call__(
        self, target: str, stage: str, message: str, can_retry: bool, cancel: threading.Event
    ) -> Choice:
        """`message` is already redacted. Ctrl-C or SIGTERM while it waits (`cancel`) and a
        closed terminal both answer `cleanup`, the safe default."""
        options = {"c": Choice.CLEANUP, "a": Choice.ABORT} | ({"r": Choice.RETRY} if can_retry else {})
        prompt = "[c] clean up, [a] abort and keep the VM" + (", [r] retry the stage" if can_retry else "")
        with _ONE_QUESTION_AT_A_TIME:
            self.stderr.write(f"\ntarget {target} failed in {stage}: {message}\n")
            while True:
                self.stderr.write(f"{prompt}? ")
                self.stderr.flush()
                line = self._readline(cancel)
                if line is None:
                    self.stderr.write("\nno answer: cleaning up\n")
                    return Choice.CLEANUP
                answer = options.get(line.strip().lower()[:1])
                if answer is not None:
                    return answer

    def _readline(self, cancel: threading.Event) -> str | None:
        while not cancel.is_set():
            ready, _, _ = select.select([self.stdin], [], [], 0.2)
            if ready:
                line = self.stdin.readline()
                return line or None  # "" : the terminal went away
        return None
