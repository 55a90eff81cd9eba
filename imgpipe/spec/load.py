"""Read a spec file into a validated Spec, collecting every problem with its
file:line:column and field path before failing once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from imgpipe.builders import builder_class, builder_names
from imgpipe.errors import SpecError
from imgpipe.spec.model import Spec
from imgpipe.spec.problems import field_path, problems_from_validation, suggestion
from imgpipe.spec.yamlsource import Located, YamlSyntaxError, load_located_file


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with where it came from and each target's builder settings."""

    spec: Spec
    path: Path
    doc: Located
    targets: dict[str, BaseModel]

    @property
    def directory(self) -> Path:
        return self.path.parent


def _fail(problems: list[str], path: Path) -> SpecError:
    head = f"{path}: invalid spec ({len(problems)} problem{'s' * (len(problems) > 1)})"
    return SpecError("\n".join([head, *("  " + p for p in problems)]))


def _validate_targets(spec: Spec, doc: Located) -> tuple[dict[str, BaseModel], list[str]]:
    targets: dict[str, BaseModel] = {}
    problems: list[str] = []
    for name, raw in spec.targets.items():
        where = ("targets", name)
        kind = raw.get("builder") if isinstance(raw, dict) else None
        if kind not in builder_names():
            hint = suggestion(str(kind), builder_names()) or f" (one of: {', '.join(builder_names())})"
            pos = doc.position((*where, "builder"))
            problems.append(f"{pos}: {field_path((*where, 'builder'))}: unknown builder {kind!r}{hint}")
            continue
        settings_model = builder_class(kind).Settings
        try:
            targets[name] = settings_model.model_validate(raw)
        except ValidationError as exc:
            problems += problems_from_validation(exc, doc, settings_model, where)
    return targets, problems


def parse_spec(doc: Located, path: Path) -> LoadedSpec:
    data: Any = doc.data
    if not isinstance(data, dict):
        pos = doc.position(())
        raise _fail(
            [f"{pos}: (document): expected a mapping of spec fields (found {type(data).__name__})"], path
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _fail(problems_from_validation(exc, doc, Spec), path) from None
    targets, problems = _validate_targets(spec, doc)
    if problems:
        raise _fail(problems, path)
    return LoadedSpec(spec=spec, path=path.resolve(), doc=doc, targets=targets)


def load_spec(path: Path) -> LoadedSpec:
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        doc = load_located_file(path)
    except YamlSyntaxError as exc:
        raise SpecError(f"{exc.position}: YAML syntax error: {exc.problem}") from None
    return parse_spec(doc, path)
