"""`-m "not integration"` selects the fast tiers only, and `-m integration` the VM tier."""

import subprocess
import sys

from tests.conftest import REPO


def _collected(marker: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "-m", marker],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_integration_marker_selects_exactly_the_vm_tier():
    fast, slow = _collected("not integration"), _collected("integration")
    assert fast and slow
    assert [t for t in fast if t.startswith("tests/integration/")] == []
    assert all(t.startswith("tests/integration/") for t in slow)
