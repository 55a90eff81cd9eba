"""The roles and playbook files a build runs, found the way Ansible finds them, and each
file's identity: its path inside its role (or relative to the spec), its content and its
executable bit. Where a role lives on disk, mtimes, VCS metadata and editor droppings never
count, so moving a roles directory or touching files never looks like a change.

The closure follows what can be known without running Ansible: meta dependencies,
`include_role`/`import_role` and play `roles:` with a literal name, `import_playbook`,
`include_tasks`/`import_tasks`, `vars_files` and `include_vars` in playbooks. A templated
name (`name: "{{ which }}"`) is recorded in `dynamic`, not guessed: status says it cannot
know what such an include will pull in."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
IGNORED_FILES = (".git", "*.pyc", "*~", ".*.swp", ".*.swo", ".DS_Store", "*.orig", "*.rej")
# Beside a playbook, Ansible reads these too (templates, files, tasks relative to the play);
# the vars ones may hold secrets, so the caller digests them with a key.
PLAYBOOK_DIRS = ("files", "templates", "tasks", "handlers", "library", "module_utils", "filter_plugins")
PLAYBOOK_VARS_DIRS = ("vars", "group_vars", "host_vars")


def _keywords(*names: str) -> frozenset[str]:
    return frozenset(
        f"{prefix}{name}" for name in names for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    )


ROLE_INCLUDES = _keywords("include_role", "import_role")
TASK_INCLUDES = _keywords("include_tasks", "import_tasks")
VARS_INCLUDES = _keywords("include_vars")
PLAYBOOK_IMPORTS = _keywords("import_playbook")
TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers")
# Only files mentioning one of these can reference another role or file: the rest are not parsed.
_MARKERS = ("_role", "roles", "dependencies", "import_playbook", "_tasks", "vars_files", "include_vars")


def ignored(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_FILES)


def tree_paths(root: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to root with '/', path) of every file under root that counts, sorted;
    symlinks are followed (Ansible reads through them), a symlink loop is walked once."""
    seen: set[str] = set()
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        for name in filenames:
            if not ignored(name):
                path = Path(dirpath, name)
                found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found)


def file_entry(path: Path) -> str:
    """'<sha256 hex>', with '+x' appended when executable. Only the executable bit counts
    (git's notion of mode): the other bits follow the umask of whoever checked the role out."""
    try:
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            executable = os.fstat(fh.fileno()).st_mode & 0o111
    except FileNotFoundError:
        return "broken-symlink"
    return digest + ("+x" if executable else "")


def tree_files(root: Path) -> dict[str, str]:
    """Each file of a role (or any tree): relative path -> file_entry."""
    return {rel: file_entry(path) for rel, path in tree_paths(root)}


def find_role(name: str, search: Iterable[Path]) -> Path | None:
    """The first directory named `name` that looks like a role (as imgpipe.roles.resolve_role);
    a name with a '/' is a path, absolute or relative to each search directory."""
    for directory in search:
        candidate = directory / name
        if (candidate / "tasks").is_dir() or (candidate / "meta").is_dir():
            return candidate
    return None


class _AnsibleYaml(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that reads Ansible's tags (!vault, !unsafe) as plain values."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_AnsibleYaml.add_multi_constructor("!", _untagged)


def _load(path: Path) -> Any:
    """The parsed file, or None when it cannot reference anything (or does not parse:
    Ansible's syntax check reports that; its content is still part of the fingerprint)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not any(marker in text for marker in _MARKERS):
        return None
    try:
        return yaml.load(text, Loader=_AnsibleYaml)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return None


def _templated(name: str) -> bool:
    return "{{" in name or "{%" in name


def _ref_name(ref: Any, keys: tuple[str, ...] = ("role", "name")) -> str | None:
    """The role or file an entry names: a string (possibly `name=x other=y`) or a mapping."""
    if isinstance(ref, dict):
        value = next((ref[k] for k in keys if k in ref), None)
        return str(value) if value is not None else None
    if isinstance(ref, str):
        for word in ref.split():
            key, sep, value = word.partition("=")
            if sep and key in keys:
                return value
        return ref.split()[0] if ref.split() and "=" not in ref.split()[0] else None
    return None


def _first_file(candidates: Iterable[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class Closure:
    """What a build runs, keyed without where it lives: roles by name (None: not on the
    search path, e.g. a collection role or one a requirements file installs later);
    playbooks, the files they read and their vars files by path relative to the spec."""

    roles: dict[str, Path | None] = field(default_factory=dict)
    playbooks: dict[str, Path] = field(default_factory=dict)
    playbook_files: dict[str, Path] = field(default_factory=dict)
    vars_files: dict[str, Path] = field(default_factory=dict)
    dynamic: list[str] = field(default_factory=list)


class _Walker:
    def __init__(self, search: list[Path], spec_dir: Path) -> None:
        self.search, self.spec_dir = search, spec_dir
        self.found = Closure()

    def key(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.spec_dir)).as_posix()

    def role(self, name: str | None, where: str, near: list[Path], after: list[Path] | None = None) -> None:
        if not name:
            return
        if _templated(name):
            self.found.dynamic.append(f"{where}: role {name}")
            return
        if name in self.found.roles:
            return
        path = find_role(name, [*near, *self.search, *(after or [])])
        self.found.roles[name] = path
        if path is None:
            return
        meta = _first_file(path / "meta" / m for m in ("main.yml", "main.yaml", "main"))
        data = _load(meta) if meta else None
        deps = data.get("dependencies") if isinstance(data, dict) else None
        for dep in deps if isinstance(deps, list) else []:
            self.role(_ref_name(dep), f"role {name}: meta/{meta.name}", [path.parent])  # type: ignore[union-attr]
        for sub in ("tasks", "handlers"):
            for rel, file in tree_paths(path / sub):
                if file.suffix in (".yml", ".yaml"):
                    self.tasks(_load(file), f"role {name}: {sub}/{rel}", [path.parent], None)

    def tasks(self, node: Any, where: str, near: list[Path], base: Path | None) -> None:
        """Walk a task list; `base` is the playbook's directory (None inside a role, whose
        files are all part of the fingerprint anyway)."""
        if isinstance(node, list):
            for item in node:
                self.tasks(item, where, near, base)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key in ROLE_INCLUDES:
                self.role(_ref_name(value, ("name", "role")), where, near, [base] if base else None)
            elif base is not None and key in TASK_INCLUDES:
                self.file(_ref_name(value, ("file", "_raw_params")), where, base, ("", "tasks"), tasks=True)
            elif base is not None and key in VARS_INCLUDES:
                self.file(_ref_name(value, ("file", "_raw_params")), where, base, ("vars", ""), tasks=False)
            elif isinstance(value, list | dict):
                self.tasks(value, where, near, base)

    def file(
        self, name: str | None, where: str, base: Path, subdirs: tuple[str, ...], *, tasks: bool
    ) -> None:
        if not name:
            return
        if _templated(name):
            self.found.dynamic.append(f"{where}: file {name}")
            return
        path = _first_file(base / sub / name for sub in subdirs)
        if path is None:
            return
        key = self.key(path)
        if tasks and key not in self.found.playbook_files:
            self.found.playbook_files[key] = path
            self.tasks(_load(path), f"playbook file {key}", [base / "roles"], path.parent)
        elif not tasks:
            self.found.vars_files[key] = path

    def playbook(self, path: Path) -> None:
        key = self.key(path)
        if key in self.found.playbooks or not path.is_file():
            return
        self.found.playbooks[key] = path
        base = path.parent
        for sub in PLAYBOOK_DIRS:
            self.found.playbook_files.update((self.key(p), p) for _, p in tree_paths(base / sub))
        for sub in PLAYBOOK_VARS_DIRS:
            self.found.vars_files.update((self.key(p), p) for _, p in tree_paths(base / sub))
        plays = _load(path)
        for play in plays if isinstance(plays, list) else []:
            if not isinstance(play, dict):
                continue
            self._play(play, key, base)

    def _play(self, play: dict[str, Any], key: str, base: Path) -> None:
        near = [base / "roles"]
        for imported in (str(play[k]) for k in PLAYBOOK_IMPORTS if k in play):
            if _templated(imported):
                self.found.dynamic.append(f"playbook {key}: playbook {imported}")
            else:
                self.playbook(base / imported)
        roles = play.get("roles")
        for ref in roles if isinstance(roles, list) else []:
            self.role(_ref_name(ref), f"playbook {key}", near, [base])
        vars_files = play.get("vars_files")
        for entry in vars_files if isinstance(vars_files, list) else []:
            # a list inside vars_files: the first file that exists is used; all are inputs
            for name in entry if isinstance(entry, list) else [entry]:
                self.file(str(name), f"playbook {key}", base, ("",), tasks=False)
        for section in TASK_LISTS:
            self.tasks(play.get(section), f"playbook {key}", near, base)


def role_closure(
    roles: Iterable[str], playbooks: Iterable[Path], search: list[Path], spec_dir: Path
) -> Closure:
    """Every role and playbook file reachable from the spec's roles and playbooks.
    `search`: the roles path, in order (imgpipe.roles.roles_path)."""
    walker = _Walker(search, spec_dir)
    for name in roles:
        walker.role(name, "provision.roles", [])
    for path in playbooks:
        walker.playbook(path)
    walker.found.dynamic = sorted(set(walker.found.dynamic))
    return walker.found
