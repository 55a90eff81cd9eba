"""`--manifest PATH`: Packer's manifest post-processor appends every build to one file and
scripts read `.builds[-1]`. Each bake still writes its own manifest.json; this appends
the same `builds` records to a shared file, under a lock, so concurrent bakes never lose
one another's records (read, append, write a temporary file, rename it over)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from imgpipe.errors import SpecError


def append_builds(shared: Path, build_manifest: Path) -> int:
    """Append the builds of `build_manifest` to `shared` and set its `last_run_uuid`;
    returns how many records were appended."""
    doc = json.loads(build_manifest.read_text())
    records = list(doc.get("builds") or [])
    shared.parent.mkdir(parents=True, exist_ok=True)
    lock = shared.with_name(f".{shared.name}.lock")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when closed
        current = _read(shared)
        current["builds"] = [*current.get("builds", []), *records]
        current["last_run_uuid"] = doc.get("last_run_uuid")
        tmp = shared.with_name(f".{shared.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(current, indent=2) + "\n")
        os.replace(tmp, shared)
    return len(records)


def check_appendable(shared: Path) -> None:
    """Before a bake: a file that is not a manifest fails now, not after an hour of baking."""
    _read(shared)


def _read(shared: Path) -> dict:  # type: ignore[type-arg]
    if not shared.exists() or not shared.read_text().strip():
        return {"builds": []}
    try:
        doc = json.loads(shared.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{shared}:{exc.lineno}: --manifest: not a JSON manifest ({exc.msg}); nothing appended",
            hint="give a new file, or the file earlier bakes appended to",
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("builds", []), list):
        raise SpecError(f"{shared}: --manifest: not a manifest (no 'builds' list); nothing appended")
    return doc
