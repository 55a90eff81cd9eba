"""A long external command (a bootstrap) ends within moments of Ctrl-C or SIGTERM: its
whole process group is stopped, not only the process imgpipe started."""

import threading
import time
from pathlib import Path

import pytest

from imgpipe.errors import CommandError, Interrupted, run_command


def test_cancel_stops_the_command_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        run_command(["sh", "-c", f"sleep 60 & echo $! > {pids}; sleep 60"], timeout=120, cancel=cancel)
    assert time.monotonic() - started < 2
    child = int(pids.read_text())
    time.sleep(0.2)
    assert _state(child) in (None, "Z"), "the background child still runs"  # gone, or not yet reaped


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_cancellable_run_reports_output_and_exit_code_like_the_plain_one():
    cancel = threading.Event()
    assert run_command(["sh", "-c", "echo hello"], cancel=cancel) == "hello\n"
    with pytest.raises(CommandError, match="exit code 3") as err:
        run_command(["sh", "-c", "echo boom; exit 3"], cancel=cancel)
    assert "boom" in str(err.value)
