"""Read a spec file into a validated Spec, collecting every problem with its
file:line:column and field path before failing once. Order: parse YAML, validate
the variable declarations alone, resolve their values, render `{{ var }}` in the
rest, validate the whole spec, then each target's builder settings."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from imgpipe.builders import builder_class, builder_names
from imgpipe.errors import SpecError
from imgpipe.spec.interpolate import interpolate
from imgpipe.spec.model import Spec, Strict, Variable
from imgpipe.spec.problems import field_path, problems_from_validation, suggestion
from imgpipe.spec.publishing import PublishStep, publish_steps
from imgpipe.spec.variables import ResolvedVar, declaration_problems, resolve_values
from imgpipe.spec.yamlsource import Located, Path_, YamlSyntaxError, load_located_file


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with where it came from, each target's builder settings, and
    the variable values its own fields were rendered with."""

    spec: Spec
    path: Path
    doc: Located
    targets: dict[str, BaseModel]
    publish: dict[str, BaseModel] = field(default_factory=dict)  # the spec's publish entries
    publish_steps: tuple[PublishStep, ...] = ()  # in run order, with the `publish:` shorthands
    variables: dict[str, ResolvedVar] = field(default_factory=dict)
    used_variables: frozenset[str] = frozenset()  # names the spec's own fields interpolate
    warnings: tuple[str, ...] = ()  # for the CLI to show; loading never prints
    # target -> lineage.ResolvedParent: what `source.parent` resolved to (lineage.with_parents)
    parents: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def steps_for(self, target: str) -> list[PublishStep]:
        return [step for step in self.publish_steps if step.target == target]


class _Declarations(Strict):
    variables: dict[str, Variable] = Field(default_factory=dict, description="Declared variables.")


def _fail(problems: list[str], path: Path) -> SpecError:
    head = f"{path}: invalid spec ({len(problems)} problem{'s' * (len(problems) > 1)})"
    return SpecError("\n".join([head, *("  " + p for p in problems)]))


def _validate_plugins(
    section: str,
    entries: dict[str, Any],
    kind_key: str,
    names: Callable[[], list[str]],
    load: Callable[[str], Any],
    doc: Located,
    context: dict[str, Any] | None = None,
) -> tuple[dict[str, BaseModel], list[str]]:
    """Validate each entry of a plugin section (targets: builders, publish: publishers)
    against the settings model of the plugin its `kind_key` names."""
    valid: dict[str, BaseModel] = {}
    problems: list[str] = []
    for name, raw in entries.items():
        where = (section, name)
        kind = raw.get(kind_key) if isinstance(raw, dict) else None
        if kind not in names():
            hint = suggestion(str(kind), names()) or f" (one of: {', '.join(names())})"
            pos = doc.position((*where, kind_key))
            problems.append(f"{pos}: {field_path((*where, kind_key))}: unknown {kind_key} {kind!r}{hint}")
            continue
        settings_model = load(kind).Settings
        try:
            valid[name] = settings_model.model_validate(raw, context=context)
        except ValidationError as exc:
            problems += problems_from_validation(exc, doc, settings_model, where)
    return valid, problems


def _validate_publish(
    spec: Spec, doc: Located, targets: dict[str, BaseModel]
) -> tuple[dict[str, BaseModel], tuple[PublishStep, ...], list[str]]:
    from imgpipe.publish.base import publisher_class, publisher_names

    entries, problems = _validate_plugins(
        "publish", spec.publish, "publisher", publisher_names, publisher_class, doc
    )
    builders = {name: (builder_class(s.builder), s) for name, s in targets.items()}  # type: ignore[attr-defined]
    steps, graph_problems = publish_steps(spec, doc, builders, entries)
    return entries, steps, problems + graph_problems


def _invisible(text: str) -> str | None:
    """The first control, format (e.g. right-to-left override) or unassigned character."""
    return next((c for c in text if unicodedata.category(c)[0] == "C"), None)


def _name_problems(spec: Spec, doc: Located) -> list[str]:
    """Role names and paths become file names, command lines and messages: no control or
    invisible characters there (they would break messages, or spoof what is shown)."""
    prov = spec.provision
    names: list[tuple[Path_, str | None]] = []
    for i, ref in enumerate(prov.roles):
        if isinstance(ref, str):
            names.append((("provision", "roles", i), ref))
        else:
            names.append((("provision", "roles", i, "role"), ref.role))
    names += [(("provision", "playbooks", i), p) for i, p in enumerate(prov.playbooks)]
    names += [(("provision", "roles_path", i), p) for i, p in enumerate(prov.roles_path)]
    names.append((("provision", "requirements"), prov.requirements))
    names.append((("source", "image", "path"), spec.source.image.path if spec.source.image else None))
    problems = []
    for loc, text in names:
        bad = _invisible(text) if text else None
        if bad:
            what = f"control or invisible character {bad!r} in a name or path"
            problems.append(f"{doc.position(loc)}: {field_path(loc)}: {what}")
    return problems


def _verify_problems(spec: Spec, doc: Located, directory: Path) -> list[str]:
    """The image tests a spec names must exist before a VM is booted for them."""
    problems = []
    for section in ("testinfra", "playbooks"):
        for i, name in enumerate(getattr(spec.verify, section)):
            if not (directory / name).is_file():
                loc = ("verify", section, i)
                problems.append(f"{doc.position(loc)}: {field_path(loc)}: no such file {name!r}")
    return problems


def _declarations(doc: Located, path: Path) -> dict[str, Variable]:
    try:
        declared = _Declarations.model_validate({"variables": doc.data.get("variables") or {}}).variables
    except ValidationError as exc:
        raise _fail(problems_from_validation(exc, doc, _Declarations), path) from None
    problems = declaration_problems(declared, doc)
    if problems:
        raise _fail(problems, path)
    return declared


def parse_spec(
    doc: Located,
    path: Path,
    var_files: Iterable[Path] | None = None,
    cli_vars: Iterable[str] | None = None,
) -> LoadedSpec:
    """Validate a parsed spec. Without var_files and cli_vars, variables come from
    defaults and the environment only, and a required one may stay unset."""
    data: Any = doc.data
    if not isinstance(data, dict):
        pos = doc.position(())
        raise _fail(
            [f"{pos}: (document): expected a mapping of spec fields (found {type(data).__name__})"], path
        )
    declared = _declarations(doc, path)
    given = var_files is not None or cli_vars is not None
    resolution = resolve_values(declared, doc, var_files or (), cli_vars or (), require=given)
    variables = resolution.values
    rendered = interpolate(doc, variables, declared)
    if rendered.problems:
        raise _fail(rendered.problems, path)
    try:
        spec = Spec.model_validate(rendered.data)
    except ValidationError as exc:
        raise _fail(problems_from_validation(exc, doc, Spec), path) from None
    targets, problems = _validate_plugins(
        "targets", spec.targets, "builder", builder_names, builder_class, doc, {"parent": spec.source.parent}
    )
    publish, steps, publish_problems = _validate_publish(spec, doc, targets)
    problems = _name_problems(spec, doc) + problems + publish_problems
    problems += _verify_problems(spec, doc, path.resolve().parent)
    if problems:
        raise _fail(problems, path)
    return LoadedSpec(
        spec=spec,
        path=path.resolve(),
        doc=doc,
        targets=targets,
        publish=publish,
        publish_steps=steps,
        variables=variables,
        used_variables=frozenset(rendered.used),
        warnings=resolution.warnings,
    )


def load_spec(
    path: Path, var_files: Iterable[Path] | None = None, cli_vars: Iterable[str] | None = None
) -> LoadedSpec:
    """Load, interpolate and validate a spec; raise SpecError listing every problem.
    Give var_files and/or cli_vars (even empty) to require every required variable."""
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        doc = load_located_file(path)
    except YamlSyntaxError as exc:
        raise SpecError(f"{exc.position}: YAML syntax error: {exc.problem}") from None
    return parse_spec(doc, path, var_files, cli_vars)
