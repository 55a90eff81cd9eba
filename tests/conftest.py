import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMGPIPE = [sys.executable, "-m", "imgpipe.cli"]


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background of a non-interactive shell (`cmd &`, nohup) inherits
    SIGINT ignored, and so would every imgpipe it starts: the Ctrl-C tests would then test
    nothing but their timeouts. Ctrl-C as a terminal delivers it, here and in children."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def private_catalog(tmp_path, monkeypatch):
    """Each test its own catalog: specs of one name from many tmp dirs would otherwise
    claim one name from many places, which a shared catalog refuses (as it should)."""
    if "IMGPIPE_CATALOG" not in os.environ:
        monkeypatch.setenv("IMGPIPE_CATALOG", f"sqlite:///{tmp_path / 'catalog.sqlite'}")


@pytest.fixture
def isolated_state(tmp_path, monkeypatch):
    """A private journal/state dir so tests never see each other's resources."""
    state = tmp_path / "state"
    monkeypatch.setenv("IMGPIPE_STATE_DIR", str(state))
    return state


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


os.environ.setdefault("ANSIBLE_NOCOLOR", "1")
