"""Which files are specs, for commands that take a directory (nightly, schedule), and the
var files an unattended run uses for each. A directory's specs are its top-level `*.yml`
and `*.yaml` files whose document is a mapping with `targets:`; other YAML (var files,
CI files, Ansible playbooks) is left alone. Subdirectories are not searched: `vars/`,
`roles/` and `tests/` live there."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from imgpipe.errors import SpecError

SPEC_SUFFIXES = (".yml", ".yaml")
VARS_DIR = "vars"  # vars/<spec file stem>.yml beside the specs: the spec's unattended var file


def find_specs(paths: Iterable[Path]) -> list[Path]:
    """Spec files named directly, and those found in directories; in a stable order, each
    once. SpecError for a path that does not exist or a directory without specs."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_file():
            found[path.resolve()] = None
        elif path.is_dir():
            specs = [p.resolve() for p in sorted(path.iterdir()) if _is_spec(p)]
            if not specs:
                raise SpecError(
                    f"{path}: no spec files in this directory (a spec is a top-level *.yml or *.yaml "
                    "file with a 'targets:' mapping)"
                )
            found.update(dict.fromkeys(specs))
        else:
            raise SpecError(f"{path}: no such spec file or directory")
    return list(found)


def default_var_files(spec: Path) -> list[Path]:
    """The var files an unattended run uses for `spec` when none are given: `vars/<stem>.yml`
    (or .yaml) beside it, if there is one."""
    return [
        candidate
        for suffix in SPEC_SUFFIXES
        if (candidate := spec.parent / VARS_DIR / f"{spec.stem}{suffix}").is_file()
    ]


def _is_spec(path: Path) -> bool:
    if not path.is_file() or path.suffix not in SPEC_SUFFIXES or path.name.startswith("."):
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
        doc = yaml.safe_load(head)
    except (OSError, yaml.YAMLError):
        return False  # not ours to judge; a named spec file gets the located error instead
    return isinstance(doc, dict) and "targets" in doc
