"""What a requirements file installs, known before installing it: imgpipe installs only
from sources reachable offline (local role or collection directories, tarballs, git
repositories on disk), so their content (or the commit a git `version` names) is the
version that will be installed, and belongs in the fingerprint."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from imgpipe.rolefiles import file_entry, tree_files


def _entries(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        items = [*(data.get("roles") or []), *(data.get("collections") or [])]
    else:
        return []
    return [item if isinstance(item, dict) else {"name": str(item)} for item in items]


def _local(src: str, here: Path) -> Path | None:
    for prefix in ("git+file://", "file://", "git+"):
        src = src.removeprefix(prefix)
    path = Path(src) if Path(src).is_absolute() else here / src
    return path if path.exists() else None


def _git_commit(repo: Path, version: str | None) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{version or 'HEAD'}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return f"git:{done.stdout.strip()}" if done.returncode == 0 else None


def source_versions(requirements: Path) -> dict[str, str]:
    """Each requirement (by its src or name) -> what will be installed: a content digest for
    a local directory or tarball, the commit for a git repository on disk, else the
    version the file pins (or `unpinned`)."""
    data = yaml.safe_load(requirements.read_text()) if requirements.is_file() else None
    versions: dict[str, str] = {}
    for entry in _entries(data):
        src = str(entry.get("src") or entry.get("source") or entry.get("name") or "")
        if not src:
            continue
        pinned = str(entry["version"]) if entry.get("version") is not None else None
        local = _local(src, requirements.parent)
        if local is None:
            versions[src] = pinned or "unpinned"
        elif local.is_file():
            versions[src] = file_entry(local)
        elif (local / ".git").exists() and (commit := _git_commit(local, pinned)):
            versions[src] = commit
        else:
            from imgpipe.fingerprint import canonical_digest

            versions[src] = "tree:" + canonical_digest(tree_files(local))
    return versions
