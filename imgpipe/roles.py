"""Finding roles the way Ansible will, and fingerprinting their contents."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from imgpipe.shipped import shipped_dir
from imgpipe.spec.load import LoadedSpec


@dataclass(frozen=True)
class ResolvedRole:
    name: str
    path: Path | None  # None: a collection role (namespace.collection.role) or missing
    sha256: str | None


def roles_path(loaded: LoadedSpec) -> list[Path]:
    """Spec's own roles/ first, then its roles_path entries, then imgpipe's shipped roles."""
    here = loaded.directory
    paths = [here / "roles", *((here / p).resolve() for p in loaded.spec.provision.roles_path)]
    return [*paths, shipped_dir("roles")]


def tree_digest(root: Path) -> str:
    """sha256 over relative paths and contents: any edit to a role changes it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def resolve_role(name: str, search: list[Path]) -> ResolvedRole:
    for directory in search:
        candidate = directory / name
        if (candidate / "tasks").is_dir() or (candidate / "meta").is_dir():
            return ResolvedRole(name, candidate, tree_digest(candidate))
    return ResolvedRole(name, None, None)


def resolve_roles(loaded: LoadedSpec) -> list[ResolvedRole]:
    search = roles_path(loaded)
    return [resolve_role(ref.role, search) for ref in loaded.spec.provision.role_refs()]
