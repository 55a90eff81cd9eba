"""Resolve declared variables. Precedence, lowest to highest: defaults,
--var-file files in the order given, IMGPIPE_VAR_<name>, --var name=value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imgpipe.errors import SpecError
from imgpipe.spec.load import LoadedSpec
from imgpipe.spec.model import Variable, VarType
from imgpipe.spec.problems import suggestion
from imgpipe.spec.yamlsource import YamlSyntaxError, load_located_file

_PY_TYPES: dict[VarType, tuple[type, ...]] = {
    VarType.string: (str,),
    VarType.integer: (int,),
    VarType.number: (int, float),
    VarType.boolean: (bool,),
    VarType.list: (list,),
    VarType.map: (dict,),
}


@dataclass(frozen=True)
class ResolvedVar:
    value: Any
    origin: str  # "default", "file.yml:3", "env IMGPIPE_VAR_x", "--var"
    sensitive: bool


def _type_ok(var: Variable, value: Any) -> bool:
    if isinstance(value, bool) and var.type not in (VarType.boolean,):
        return False
    return isinstance(value, _PY_TYPES[var.type])


def _from_text(var: Variable, text: str) -> Any:
    """Command-line and environment values are text; read them as the declared type."""
    if var.type == VarType.string:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class _Resolver:
    def __init__(self, loaded: LoadedSpec) -> None:
        self.declared = loaded.spec.variables
        self.values: dict[str, ResolvedVar] = {}
        self.problems: list[str] = []

    def set(self, name: str, value: Any, origin: str, where: str) -> None:
        var = self.declared.get(name)
        if var is None:
            self.problems.append(
                f"{where}: variable '{name}' is not declared in the spec{suggestion(name, self.declared)}"
            )
            return
        if not _type_ok(var, value):
            self.problems.append(
                f"{where}: variable '{name}': expected {var.type.value}, found {type(value).__name__}"
            )
            return
        self.values[name] = ResolvedVar(value, origin, var.sensitive)


def resolve_variables(
    loaded: LoadedSpec, var_files: list[Path], cli_vars: list[str]
) -> dict[str, ResolvedVar]:
    r = _Resolver(loaded)
    for name, var in r.declared.items():
        if var.default is not None:
            r.set(name, var.default, "default", str(loaded.doc.position(("variables", name, "default"))))
    for path in var_files:
        if not path.is_file():
            r.problems.append(f"{path}: no such var file")
            continue
        try:
            doc = load_located_file(path)
        except YamlSyntaxError as exc:
            r.problems.append(f"{exc.position}: YAML syntax error: {exc.problem}")
            continue
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            r.problems.append(f"{doc.position(())}: a var file must be a mapping of name: value")
            continue
        for name, value in doc.data.items():
            pos = doc.position((name,), key=True)
            r.set(str(name), value, f"{path}:{pos.line}", str(pos))
    for key, text in sorted(os.environ.items()):
        if key.startswith("IMGPIPE_VAR_"):
            name = key.removeprefix("IMGPIPE_VAR_")
            var = r.declared.get(name)
            r.set(name, _from_text(var, text) if var else text, f"env {key}", f"environment {key}")
    for item in cli_vars:
        name, sep, text = item.partition("=")
        if not sep or not name:
            r.problems.append(f"--var {item!r}: expected NAME=VALUE")
            continue
        var = r.declared.get(name)
        r.set(name, _from_text(var, text) if var else text, "--var", f"--var {name}")
    for name, var in r.declared.items():
        if var.required and name not in r.values:
            pos = loaded.doc.position(("variables", name), key=True)
            r.problems.append(
                f"{pos}: variable '{name}' is required: pass --var {name}=..., a --var-file, "
                f"or IMGPIPE_VAR_{name}"
            )
    if r.problems:
        raise SpecError("\n".join(["invalid variables:", *("  " + p for p in r.problems)]))
    return r.values
