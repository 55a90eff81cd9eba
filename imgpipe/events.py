"""Progress events: core code emits them, a reporter renders them.
Core code never prints; this is its only voice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    target: str
    kind: str  # stage_started | stage_finished | task | message | error | kept | target_finished
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        pass


class Emitter:
    """A target's handle on the sink, recording stage timings as it goes."""

    def __init__(self, sink: EventSink, target: str) -> None:
        self.sink = sink
        self.target = target
        self.timings: dict[str, float] = {}

    def __call__(self, kind: str, **data: Any) -> None:
        self.sink.emit(Event(self.target, kind, data))

    def message(self, text: str) -> None:
        self("message", text=text)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self("stage_started", stage=name)
        start = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = round(time.monotonic() - start, 3)
            self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
            self("stage_finished", stage=name, seconds=seconds, ok=ok)
