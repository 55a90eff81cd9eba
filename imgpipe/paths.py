"""Where imgpipe keeps caches and state. Overridable for tests and CI."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Base images, downloads and build work dirs (large, disposable)."""
    env = os.environ.get("IMGPIPE_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgpipe"
    base.mkdir(parents=True, exist_ok=True)
    return base


def state_dir() -> Path:
    """The journal of live temporary resources (small, must survive kill -9)."""
    env = os.environ.get("IMGPIPE_STATE_DIR")
    base = (
        Path(env)
        if env
        else Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "imgpipe"
    )
    base.mkdir(parents=True, exist_ok=True)
    return base
