"""`{{ var }}` in imgpipe's own fields, rendered by a sandboxed Jinja2 before the
spec is validated, so a string that is exactly `{{ n }}` becomes n's own value
(`cpus: "{{ n }}"` gives an integer). Role vars are left for Ansible to template,
and the variable declarations are never rendered."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from imgpipe.spec.model import Variable
from imgpipe.spec.problems import field_path, suggestion
from imgpipe.spec.variables import ENV_PREFIX, ResolvedVar
from imgpipe.spec.yamlsource import Located, Path_

_DELIMITERS = ("{{", "{%", "{#")
_WHOLE = re.compile(r"\A\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\Z", re.S)
_MAX_SIZE = 1_000_000  # longest string or list, and largest integer in bits, an expression may build


class _Sandbox(ImmutableSandboxedEnvironment):
    """No attribute or method access to Python internals (Jinja's sandbox), no mutation,
    and no `'x' * 10**12` or `9**9**9` from a typo freezing the loader."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        is_power = operator == "**" and isinstance(left, int) and isinstance(right, int)
        if is_power and max(abs(left).bit_length(), 1) * right > _MAX_SIZE:
            raise SecurityError("the result of ** would be too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > _MAX_SIZE
                ):
                    raise SecurityError("the result of * would be too large")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@dataclass
class Interpolated:
    """The rendered data, the variables its templates used, and every problem found."""

    data: Any
    used: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def is_left_alone(path: Path_) -> bool:
    """Declarations, and role vars (Ansible's to template), are never rendered."""
    if path[:1] == ("variables",):
        return True
    return len(path) >= 4 and path[:2] == ("provision", "roles") and path[3] == "vars"


def interpolate(
    doc: Located, variables: Mapping[str, ResolvedVar], declared: Mapping[str, Variable]
) -> Interpolated:
    """Render every template string of doc.data outside the declarations and role vars.
    `declared` names every declared variable (a declared one without a value is its own error)."""
    result = Interpolated(None)
    renderer = _Renderer(doc, variables, declared, result)
    result.data = renderer.walk(doc.data, ())
    return result


def _plain(value: Any, depth: int = 0) -> bool:
    """Data a spec field could hold (not a range, a function, an Undefined ...)."""
    if depth > 50:
        return False
    if isinstance(value, Undefined):
        return False
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _to_data(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_to_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_data(v) for k, v in value.items()}
    return value


class _Renderer:
    def __init__(
        self,
        doc: Located,
        variables: Mapping[str, ResolvedVar],
        declared: Mapping[str, Variable],
        result: Interpolated,
    ) -> None:
        self.doc, self.variables, self.declared, self.result = doc, variables, declared, result
        self.context = {name: v.value for name, v in variables.items()}

    def walk(self, value: Any, path: Path_) -> Any:
        if is_left_alone(path):
            return value
        if isinstance(value, dict):
            return {k: self.walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "{" in value and any(d in value for d in _DELIMITERS):
            return self.render(value, path)
        return value

    def problem(self, path: Path_, text: str) -> None:
        self.result.problems.append(f"{self.doc.position(path)}: {field_path(path)}: {text}")

    def render(self, text: str, path: Path_) -> Any:
        try:
            compiled = _compile(text)
        except TemplateSyntaxError as exc:
            where = f" (template line {exc.lineno})" if exc.lineno and exc.lineno > 1 else ""
            self.problem(path, f"template syntax error: {exc.message}{where}")
            return text
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError from absurd nesting
            self.problem(path, f"template error: {_reason(exc)}")
            return text
        if not self.names_ok(compiled.names, path):
            return text
        if compiled.expression is not None:
            try:
                value = compiled.expression(**self.context)
            except Exception:  # noqa: BLE001 - rendering below reports it with the reason
                value = None
            else:
                if _plain(value):
                    return _to_data(value)
        try:
            return compiled.template.render(self.context)
        except Exception as exc:  # noqa: BLE001 - any failure of the author's template is a spec problem
            self.problem(path, f"template error: {_reason(exc)}")
            return text

    def names_ok(self, names: frozenset[str], path: Path_) -> bool:
        problems_before = len(self.result.problems)
        for name in sorted(names):
            if name not in self.declared:
                self.problem(path, f"undefined variable '{name}'{suggestion(name, self.declared)}")
            elif self.declared[name].sensitive:
                self.problem(
                    path,
                    f"variable '{name}' is sensitive: use it in role vars only "
                    "(imgpipe's own fields show up in names, logs and the manifest)",
                )
            elif name not in self.variables:
                self.problem(
                    path,
                    f"variable '{name}' has no value: pass --var {name}=..., a --var-file, "
                    f"or {ENV_PREFIX}{name}",
                )
            else:
                self.result.used.add(name)
        return len(self.result.problems) == problems_before


@dataclass(frozen=True)
class _Compiled:
    names: frozenset[str]  # variables the template reads
    template: Template
    expression: Callable[..., Any] | None  # when the text is one `{{ expression }}`: its native value


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> _Compiled:
    """Compiling is the slow part of rendering, and the same strings recur (tests, many targets)."""
    tree = _ENV.parse(text)
    names = frozenset(meta.find_undeclared_variables(tree) - set(_ENV.globals))
    expression = None
    whole = _WHOLE.match(text)
    if whole and _single_output(tree):
        try:
            expression = _ENV.compile_expression(_trim(whole["expr"]), undefined_to_none=False)
        except TemplateSyntaxError:
            expression = None
    return _Compiled(names, _ENV.from_string(tree), expression)


def _single_output(tree: nodes.Template) -> bool:
    """The template is one `{{ expression }}` and nothing else."""
    return (
        len(tree.body) == 1
        and isinstance(tree.body[0], nodes.Output)
        and len(tree.body[0].nodes) == 1
        and not isinstance(tree.body[0].nodes[0], nodes.TemplateData)
    )


def _trim(expr: str) -> str:
    """Drop Jinja's whitespace-control marks: `{{- x -}}`."""
    if expr[:1] in "-+":
        expr = expr[1:]
    if expr[-1:] in "-+":
        expr = expr[:-1]
    return expr


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    text = text.splitlines()[0] if text.strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
