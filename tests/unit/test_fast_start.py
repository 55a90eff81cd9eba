"""`imgpipe --help` and `imgpipe validate` must not import the heavy clients."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import sys
from typer.testing import CliRunner
from imgpipe.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("boto3", "botocore", "libvirt", "ansible_runner") if m in sys.modules)
print(",".join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["validate", "examples/web.yml"]])
def test_no_heavy_imports(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
