"""Install a spec's ansible-galaxy requirements (roles and collections) into the
build's work dir, so nothing outside it changes. Sources must be reachable from
here: local paths, file:// tarballs or git repositories on disk work offline."""

from __future__ import annotations

from pathlib import Path

import yaml

from imgpipe.errors import SpecError, run_command


def galaxy_binary() -> str:
    import sys

    beside = Path(sys.executable).parent / "ansible-galaxy"
    return str(beside) if beside.is_file() else "ansible-galaxy"


def install_requirements(requirements: Path, dest: Path) -> tuple[Path, Path]:
    """Returns (roles dir, collections dir) under dest."""
    if not requirements.is_file():
        raise SpecError(f"{requirements}: no such requirements file (provision.requirements)")
    data = yaml.safe_load(requirements.read_text()) or {}
    roles_dir, collections_dir = dest / "roles", dest / "collections"
    roles_dir.mkdir(parents=True, exist_ok=True)
    collections_dir.mkdir(parents=True, exist_ok=True)
    wants_roles = isinstance(data, list) or bool(data.get("roles"))
    wants_collections = isinstance(data, dict) and bool(data.get("collections"))
    if wants_roles:
        run_command(
            [galaxy_binary(), "role", "install", "-r", str(requirements), "-p", str(roles_dir)], timeout=600
        )
    if wants_collections:
        run_command(
            [galaxy_binary(), "collection", "install", "-r", str(requirements), "-p", str(collections_dir)],
            timeout=600,
        )
    return roles_dir, collections_dir
