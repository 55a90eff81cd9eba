"""Renderers: the live table (one row per target) on a terminal, lines in CI logs."""

import io

from rich.console import Console

from imgpipe.events import Event
from imgpipe.report import LineReporter, LiveReporter


def feed(reporter):
    reporter.emit(Event("local", "stage_started", {"stage": "provision"}))
    reporter.emit(Event("aws", "stage_started", {"stage": "boot_to_ssh"}))
    reporter.emit(Event("local", "task", {"role": "nginx", "task": "Install nginx"}))
    reporter.emit(Event("local", "stage_finished", {"stage": "provision", "seconds": 12.3, "ok": True}))
    reporter.emit(Event("aws", "stage_finished", {"stage": "boot_to_ssh", "seconds": 4.0, "ok": False}))
    reporter.emit(Event("aws", "error", {"message": "boom [red]not markup[/]"}))
    reporter.emit(Event("aws", "target_finished", {"ok": False}))


def test_live_table_has_a_row_per_target():
    out = io.StringIO()
    live = LiveReporter(["local", "aws"], console=Console(file=out, force_terminal=True, width=120))
    feed(live)
    table = live._table()
    live.close()
    assert [c._cells for c in table.columns][0] == ["local", "aws"]
    assert table.columns[1]._cells == ["provision", "FAILED"]
    assert "nginx : Install nginx" in table.columns[3]._cells[0]
    assert "provision done in 12.3 s" in out.getvalue()
    assert "boom [red]not markup[/]" in out.getvalue()


def test_line_reporter_prefixes_target():
    out = io.StringIO()
    feed(LineReporter(out))
    text = out.getvalue()
    assert "[local]   task nginx : Install nginx" in text
    assert "[local] provision done in 12.3 s" in text and "[aws] FAILED" in text
    assert "[aws] boot_to_ssh failed after 4.0 s" in text
