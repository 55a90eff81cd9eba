"""`--help` shows what to type, not Python types; `--debug` works after the subcommand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgpipe.cli import _debug_first

COMMANDS = [
    ["bake"],
    ["validate"],
    ["nightly"],
    ["promote"],
    ["gc"],
    ["doctor"],
    ["schedule", "install"],
    ["vm", "up"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_placeholders_not_python_types(command):
    proc = subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    options = proc.stdout.split("Arguments:", 1)[-1]
    assert "--" in options
    for python_type in ("<list[", "<str>", "<int", "<path>", "<float>"):
        assert python_type not in options, proc.stdout


def test_bake_help_names_targets_and_variables():
    proc = subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", "bake", "--help"], capture_output=True, text=True
    )
    assert "--only TARGET" in proc.stdout and "--var NAME=VALUE" in proc.stdout, proc.stdout


def test_debug_after_the_subcommand_moves_in_front():
    assert _debug_first(["bake", "--debug", "x.yml"]) == ["--debug", "bake", "x.yml"]
    assert _debug_first(["bake", "x.yml"]) == ["bake", "x.yml"]
    assert _debug_first(["vm", "up", "--", "--debug"]) == ["vm", "up", "--", "--debug"]


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", "bake", "--debug", str(tmp_path / "none.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "No such option" not in proc.stderr
    assert "Traceback" in proc.stderr and "no such spec file" in proc.stderr
