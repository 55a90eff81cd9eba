"""Declared variables: check the declarations, resolve each value and validate it.
Precedence, lowest to highest, as Packer and Terraform have it: defaults,
IMGPIPE_VAR_<name>, --var-file files in the order given, --var name=value. Sensitive
values never appear in a message."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from imgpipe.errors import SpecError
from imgpipe.spec.model import Variable, VarType
from imgpipe.spec.problems import field_path, short_repr, suggestion
from imgpipe.spec.yamlsource import Located, YamlSyntaxError, load_located_file

if TYPE_CHECKING:
    from imgpipe.spec.load import LoadedSpec

HIDDEN = "(sensitive value hidden)"
ENV_PREFIX = "IMGPIPE_VAR_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_PY_TYPES: dict[VarType, tuple[type, ...]] = {
    VarType.string: (str,),
    VarType.integer: (int,),
    VarType.number: (int, float),
    VarType.boolean: (bool,),
    VarType.list: (list,),
    VarType.map: (dict,),
}
_SIZED = (VarType.string, VarType.list)
_BOUNDED = (VarType.integer, VarType.number, *_SIZED)


@dataclass(frozen=True)
class ResolvedVar:
    value: Any
    origin: str  # short, for `inspect`: "default", "file.yml:3", "env IMGPIPE_VAR_x", "--var"
    sensitive: bool
    where: str = ""  # for errors: "spec.yml:5:14", "vars.yml:2:8", "environment IMGPIPE_VAR_x", "--var x"


@dataclass(frozen=True)
class Resolution:
    """The resolved values, and what the caller should tell the user without failing."""

    values: dict[str, ResolvedVar]
    warnings: tuple[str, ...] = ()


def type_ok(var_type: VarType, value: Any) -> bool:
    if isinstance(value, bool) and var_type is not VarType.boolean:
        return False
    return isinstance(value, _PY_TYPES[var_type])


def _type_name(value: Any) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "map"}
    return names.get(type(value), type(value).__name__)


def _found(value: Any, sensitive: bool) -> str:
    return HIDDEN if sensitive else f"(found {short_repr(value)})"


def check_value(var: Variable, value: Any) -> str | None:
    """What is wrong with `value` for `var` ("expected ... (found ...)"), or None if it passes."""
    found = _found(value, var.sensitive)
    if not type_ok(var.type, value):
        return f"expected {var.type.value}, not {_type_name(value)} {found}"
    rule = var.validation
    expected = None
    if rule.choices is not None and not any(_same(c, value) for c in rule.choices):
        expected = "one of " + ", ".join(short_repr(c) for c in rule.choices)
    elif rule.pattern is not None and isinstance(value, str) and not re.fullmatch(rule.pattern, value):
        expected = f"a value matching pattern {rule.pattern!r}"
    else:
        measure, what = (len(value), "a length of ") if var.type in _SIZED else (value, "")
        if rule.min is not None and measure < rule.min:
            expected = f"{what}at least {rule.min}"
        elif rule.max is not None and measure > rule.max:
            expected = f"{what}at most {rule.max}"
        if expected and what and not var.sensitive:
            found = f"(found length {measure})"
    if expected is None:
        return None
    return f"{rule.message} {found}" if rule.message else f"expected {expected} {found}"


def _same(choice: Any, value: Any) -> bool:
    return isinstance(choice, bool) == isinstance(value, bool) and choice == value


def declaration_problems(declared: Mapping[str, Variable], doc: Located) -> list[str]:
    """Mistakes in the declarations themselves, each at its position in the spec."""
    problems: list[str] = []

    def add(loc: tuple[str | int, ...], text: str, *, key: bool = False) -> None:
        problems.append(f"{doc.position(loc, key=key)}: {field_path(loc)}: {text}")

    for name, var in declared.items():
        at = ("variables", name)
        rule = var.validation
        if not _NAME.fullmatch(name):
            add(at, "a variable name must be letters, digits and '_', not starting with a digit", key=True)
        if var.default is not None:
            wrong = check_value(var, var.default)
            if wrong:
                add((*at, "default"), wrong)
        if rule.pattern is not None and var.type is not VarType.string:
            add((*at, "validation", "pattern"), f"pattern applies to strings only (type is {var.type.value})")
        for bound in ("min", "max"):
            value = getattr(rule, bound)
            if value is None:
                continue
            if var.type not in _BOUNDED:
                add((*at, "validation", bound), f"{bound} applies to numbers, strings and lists only")
            elif not math.isfinite(value):
                add((*at, "validation", bound), f"expected a finite number (found {value})")
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            add((*at, "validation", "max"), f"max ({rule.max}) is less than min ({rule.min})")
        for i, choice in enumerate(rule.choices or ()):
            if not type_ok(var.type, choice):
                add((*at, "validation", "choices", i), f"expected {var.type.value} {_found(choice, False)}")
    return problems


def _from_text(var: Variable | None, text: str) -> Any:
    """Command-line and environment values are text; read them as the declared type."""
    if var is None or var.type == VarType.string:
        return text
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return text


class _Resolver:
    def __init__(self, declared: Mapping[str, Variable]) -> None:
        self.declared = declared
        self.values: dict[str, ResolvedVar] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def set(self, name: str, value: Any, origin: str, where: str, key_where: str | None = None) -> None:
        var = self.declared.get(name)
        if var is None:
            hint = suggestion(name, self.declared)
            self.problems.append(f"{key_where or where}: variable {name!r} is not declared in the spec{hint}")
            return
        wrong = check_value(var, value)
        if wrong:
            self.problems.append(f"{where}: variable '{name}': {wrong}")
            return
        self.values[name] = ResolvedVar(value, origin, var.sensitive, where)

    def read_environment(self, environ: Mapping[str, str]) -> None:
        """IMGPIPE_VAR_<name> of declared names. Other names are ignored with one warning, as
        Terraform does with TF_VAR_: the environment is shared with other projects and CI
        jobs, so a stray name there is not this spec's mistake (--var and --var-file are)."""
        undeclared = []
        for key, text in sorted(environ.items()):
            if not key.startswith(ENV_PREFIX):
                continue
            name = key.removeprefix(ENV_PREFIX)
            if name not in self.declared:
                undeclared.append(f"{key}{suggestion(name, self.declared)}")
                continue
            self.set(name, _from_text(self.declared[name], text), f"env {key}", f"environment {key}")
        if undeclared:
            self.warnings.append(
                "ignoring environment variables for undeclared variables: " + ", ".join(undeclared)
            )

    def read_file(self, path: Path) -> None:
        if not path.is_file():
            self.problems.append(f"{path}: no such var file")
            return
        try:
            doc = load_located_file(path)
        except YamlSyntaxError as exc:
            self.problems.append(f"{exc.position}: YAML syntax error: {exc.problem}")
            return
        if doc.data is None:
            return
        if not isinstance(doc.data, dict):
            self.problems.append(f"{doc.position(())}: a var file must be a mapping of name: value")
            return
        for name, value in doc.data.items():
            key_pos = doc.position((name,), key=True)
            where = str(doc.position((name,)))
            self.set(str(name), value, f"{path}:{key_pos.line}", where, str(key_pos))


def resolve_values(
    declared: Mapping[str, Variable],
    doc: Located,
    var_files: Iterable[Path] = (),
    cli_vars: Iterable[str] = (),
    *,
    require: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Resolution:
    """Each declared variable's value and where it came from, and warnings for the caller to
    show; raise SpecError listing every problem. With require=False a required variable may
    stay without a value."""
    r = _Resolver(declared)
    for name, var in declared.items():
        if var.default is not None:
            where = str(doc.position(("variables", name, "default")))
            r.set(name, var.default, "default", where)
    r.read_environment(os.environ if environ is None else environ)  # the ambient layer: lowest
    for path in var_files:
        r.read_file(Path(path))
    for item in cli_vars:
        name, sep, text = item.partition("=")
        if not sep or not name:
            r.problems.append(f"--var {item!r}: expected NAME=VALUE")
            continue
        r.set(name, _from_text(declared.get(name), text), "--var", f"--var {name}")
    for name, var in declared.items():
        if require and var.required and name not in r.values:
            pos = doc.position(("variables", name), key=True)
            r.problems.append(
                f"{pos}: variable '{name}' is required: pass --var {name}=..., a --var-file, "
                f"or {ENV_PREFIX}{name}"
            )
    if r.problems:
        raise SpecError("\n".join(["invalid variables:", *("  " + p for p in r.problems)]))
    return Resolution(r.values, tuple(r.warnings))


def resolve_variables(
    loaded: LoadedSpec, var_files: Iterable[Path], cli_vars: Iterable[str]
) -> dict[str, ResolvedVar]:
    """Resolve again with these sources (required ones must now have a value). The spec's own
    fields were interpolated when it was loaded; load_spec(path, var_files, cli_vars) is the
    way to interpolate with these sources, so a value that differs there is a caller bug."""
    values = resolve_values(loaded.spec.variables, loaded.doc, var_files, cli_vars).values
    stale = sorted(
        name
        for name in loaded.used_variables
        if name not in values
        or name not in loaded.variables
        or values[name].value != loaded.variables[name].value
    )
    if stale:
        raise RuntimeError(
            f"the spec was interpolated without these sources, but {', '.join(stale)} changed: "
            "pass var_files and cli_vars to load_spec() and use LoadedSpec.variables"
        )
    return values
