"""sha256 of large local files (base images, source images), remembered in
cache_dir()/digests.json so that asking again for an unchanged file costs one stat.

A file counts as unchanged while its real path, size, mtime, ctime, inode and device stay
the same: ctime cannot be set back by a user (`touch -r` can fake an mtime), so rewriting
a file in place always rehashes it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from imgpipe.paths import cache_dir

CACHE_NAME = "digests.json"


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _read(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(real: str, stamp: list[int], digest: str) -> None:
    """Add one entry and drop entries of files that are gone, under a lock so concurrent
    bakes do not lose each other's entries; written atomically (a reader never sees half)."""
    cache = cache_dir() / CACHE_NAME
    with open(cache.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = {path: entry for path, entry in _read(cache).items() if os.path.exists(path)}
        entries[real] = {"stamp": stamp, "sha256": digest}
        partial = cache.with_name(f".{CACHE_NAME}.{os.getpid()}")
        partial.write_text(json.dumps(entries, indent=0, sort_keys=True))
        os.replace(partial, cache)


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's content; instant when the file is unchanged since the last call."""
    real = os.path.realpath(path)
    before = _stamp(os.stat(real))
    entry = _read(cache_dir() / CACHE_NAME).get(real)
    if isinstance(entry, dict) and entry.get("stamp") == before and isinstance(entry.get("sha256"), str):
        return str(entry["sha256"])
    with open(real, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if _stamp(os.stat(real)) == before:  # not written to while we read it
        _remember(real, before, digest)
    return digest
