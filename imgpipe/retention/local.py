"""A build's local files, as retention removes them: only paths the catalog recorded for
that build (each target's image files, and its build directory `<output>/<spec>/<build id>`
with the sums, logs and manifest in it), and only on the host that made them."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.core.artifact import IMAGE_FILE

if TYPE_CHECKING:
    from imgpipe.catalog.views import BuildView


def elsewhere(build: BuildView) -> str | None:
    """The host a build's files live on when that is not this one (only it can remove them)."""
    here = socket.gethostname()
    for target in build.targets:
        if target.record.get("output_dir") and build.owner_host != here:
            return build.owner_host
        for a in target.artifacts:
            if a.kind == IMAGE_FILE and a.host and a.host != here:
                return a.host
    return None


def file_steps(build: BuildView) -> list[dict[str, Any]]:
    """Remove each recorded image file, then the build directory. A directory is taken only
    when it is the build's own: named after the build id, inside a directory named after
    the spec (never an output directory someone pointed elsewhere)."""
    steps: list[dict[str, Any]] = []
    dirs: list[str] = []
    for target in build.targets:
        out = target.record.get("output_dir")
        if not out:
            continue
        out_dir = Path(out)
        for f in target.record.get("files") or []:
            name = f.get("name")
            if name and "/" not in name and name not in ("..", "."):
                steps.append({"do": "remove-file", "path": str(out_dir / name)})
        if out_dir.name == build.id and out_dir.parent.name == build.spec_name and str(out_dir) not in dirs:
            dirs.append(str(out_dir))
    seen = set()
    unique = [s for s in steps if not (s["path"] in seen or seen.add(s["path"]))]  # type: ignore[func-returns-value]
    return unique + [{"do": "remove-dir", "path": d} for d in dirs]


def exists(step: dict[str, Any]) -> bool:
    path = Path(step["path"])
    return path.exists() or path.is_symlink()


def remove(step: dict[str, Any]) -> None:
    """Idempotent: a path already gone is done."""
    path = Path(step["path"])
    if step["do"] == "remove-dir":
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        return
    path.unlink(missing_ok=True)
