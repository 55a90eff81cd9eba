"""Finding roles the way Ansible will, and fingerprinting their contents."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from imgpipe.shipped import shipped_dir
from imgpipe.spec.load import LoadedSpec

COLLECTION_ROLE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class ResolvedRole:
    name: str
    path: Path | None  # None: a collection role (namespace.collection.role) or missing
    sha256: str | None


def roles_path(loaded: LoadedSpec, installed: Path | None = None) -> list[Path]:
    """Spec's own roles/ first, then its roles_path entries, then roles installed from
    the requirements file (if any), then imgpipe's shipped roles."""
    here = loaded.directory
    paths = [here / "roles", *((here / p).resolve() for p in loaded.spec.provision.roles_path)]
    return [*paths, *([installed] if installed else []), shipped_dir("roles")]


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


def reference_problems(loaded: LoadedSpec) -> list[str]:
    """Roles and playbooks the spec names but that do not exist, with positions.
    Roles may also come from the requirements file, which is only read at bake time."""
    problems = []
    prov = loaded.spec.provision
    search = roles_path(loaded)
    for i, raw in enumerate(prov.roles):
        name = raw if isinstance(raw, str) else raw.role
        collection_role = COLLECTION_ROLE.match(name) is not None
        if collection_role or prov.requirements or resolve_role(name, search).path:
            continue
        field = ("provision", "roles", i) if isinstance(raw, str) else ("provision", "roles", i, "role")
        searched = ", ".join(str(p) for p in search)
        problems.append(
            f"{loaded.doc.position(field)}: provision.roles[{i}]: role {name!r} not found "
            f"(searched {searched})"
        )
    for i, playbook in enumerate(prov.playbooks):
        if not (loaded.directory / playbook).is_file():
            pos = loaded.doc.position(("provision", "playbooks", i))
            problems.append(f"{pos}: provision.playbooks[{i}]: no such playbook {playbook}")
    if prov.requirements and not (loaded.directory / prov.requirements).is_file():
        pos = loaded.doc.position(("provision", "requirements"))
        problems.append(f"{pos}: provision.requirements: no such file {prov.requirements}")
    from imgpipe.ansible_options import option_problems

    return problems + option_problems(loaded)
