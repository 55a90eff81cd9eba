"""Rendering progress for humans: one live row per target on a terminal,
timestamped lines otherwise (CI logs). Thread-safe; targets emit from threads."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from imgpipe.events import Event

if TYPE_CHECKING:
    from rich.console import Console


def stage_outcome(d: dict[str, object]) -> str:
    verb = "done in" if d.get("ok", True) else "failed after"
    return f"{d['stage']} {verb} {d['seconds']:.1f} s"


class LineReporter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def _line(self, target: str, text: str) -> None:
        with self.lock:
            print(f"{time.strftime('%H:%M:%S')} [{target}] {text}", file=self.stream, flush=True)

    def emit(self, event: Event) -> None:
        d = event.data
        if event.kind == "stage_started" and d["stage"] != "cleanup":
            self._line(event.target, f"{d['stage']} ...")
        elif event.kind == "stage_finished" and d["stage"] != "cleanup":
            self._line(event.target, stage_outcome(d))
        elif event.kind == "task":
            role = f"{d['role']} : " if d.get("role") else ""
            self._line(event.target, f"  task {role}{d['task']}")
        elif event.kind == "message":
            self._line(event.target, d["text"])
        elif event.kind in ("error", "kept"):
            self._line(event.target, d.get("message") or d.get("hint", ""))
        elif event.kind == "target_finished":
            self._line(event.target, "finished" if d["ok"] else "FAILED")

    def close(self) -> None:
        pass


class LiveReporter:
    """A rich live table; every line of detail still goes to the log files."""

    def __init__(self, targets: list[str], console: Console | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(stderr=True)
        self.rows = {t: {"stage": "waiting", "detail": "", "since": time.monotonic()} for t in targets}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.live = Live(
            self._table(), console=self.console, refresh_per_second=4, get_renderable=self._table
        )
        self.live.start()

    def _table(self):  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("target", "stage", "elapsed", "detail"):
            table.add_column(col, overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        for target, row in self.rows.items():
            table.add_row(target, str(row["stage"]), f"{now - row['since']:.0f}s", str(row["detail"]))
        return table

    def emit(self, event: Event) -> None:
        d = event.data
        with self.lock:
            row = self.rows.setdefault(event.target, {"stage": "", "detail": "", "since": time.monotonic()})
            if event.kind == "stage_started":
                row.update(stage=d["stage"], detail="", since=time.monotonic())
            elif event.kind == "stage_finished" and d["stage"] != "cleanup":
                self._print(event.target, "dim" if d.get("ok", True) else "red", stage_outcome(d))
            elif event.kind == "task":
                row["detail"] = f"{d['role']} : {d['task']}" if d.get("role") else d["task"]
            elif event.kind == "message":
                row["detail"] = d["text"]
            elif event.kind in ("error", "kept"):
                self._print(event.target, "red", str(d.get("message") or d.get("hint")))
            elif event.kind == "target_finished":
                row.update(stage="done" if d["ok"] else "FAILED", detail="")

    def _print(self, target: str, style: str, text: str) -> None:
        """User text (task names, errors) may hold [brackets]: never parse it as markup."""
        from rich.text import Text

        self.console.print(Text.assemble((target, style), " ", text), highlight=False)

    def close(self) -> None:
        self.live.stop()


def make_reporter(targets: list[str], json_lines: bool = False) -> LineReporter | LiveReporter | JsonReporter:
    if json_lines:
        return JsonReporter()
    return LiveReporter(targets) if sys.stderr.isatty() else LineReporter()


class JsonReporter:
    """One JSON object per line on stdout, for CI systems. The envelope is
    versioned ("v") and its keys are pinned by a test."""

    VERSION = 1

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def emit(self, event: Event) -> None:
        self.write({"event": event.kind, "target": event.target, "time": round(event.time, 3), **event.data})

    def write(self, obj: dict[str, object]) -> None:
        import json

        with self.lock:
            print(json.dumps({"v": self.VERSION, **obj}, default=str), file=self.stream, flush=True)

    def close(self) -> None:
        pass
