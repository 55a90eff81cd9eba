"""Every wait honours cancellation: the bake's `cancel` event is set on Ctrl-C and
SIGTERM, and a wait or a step boundary then raises Interrupted at once."""

from __future__ import annotations

import threading

from imgpipe.errors import Interrupted


def sleep_unless_cancelled(cancel: threading.Event, seconds: float) -> None:
    """Sleep `seconds`, or raise Interrupted the moment `cancel` is set."""
    if cancel.wait(seconds):
        raise Interrupted("interrupted")


def checkpoint(cancel: threading.Event) -> None:
    """Between steps: a cancelled bake starts nothing new."""
    if cancel.is_set():
        raise Interrupted("interrupted")
