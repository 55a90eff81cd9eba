import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMGPIPE = [sys.executable, "-m", "imgpipe.cli"]


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
