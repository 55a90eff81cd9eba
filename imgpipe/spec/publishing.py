"""The publish graph of a spec: which publisher takes which artifact, in what order.

Each target's artifact flows to the publish entries whose `from:` names it, and an entry
that makes an artifact passes it on to the entries `from:` it. A plugin whose settings
have a `publish` field (the EC2 builder, aws-import) declares it as shorthand for a
publisher (`publish_shorthand`); that step refines its owner's artifact in place (the
AMI and its copies stay the target's). Kinds are checked here, before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from imgpipe.core.artifact import IMAGE_FILE
from imgpipe.spec.model import Spec
from imgpipe.spec.problems import field_path, problems_from_validation, suggestion
from imgpipe.spec.yamlsource import Located

SHORTHAND_FIELD = "publish"


@dataclass(frozen=True)
class PublishStep:
    name: str  # the spec's publish entry, or `<owner>.publish` for a shorthand
    publisher: str  # the plugin's name
    settings: BaseModel
    source: str  # the target or publish entry whose artifact it takes
    target: str  # the target whose build the chain starts from
    refines: bool = False  # a shorthand: what it makes replaces its source's artifact


def _publisher_class(name: str) -> Any:
    from imgpipe.publish.base import publisher_class

    return publisher_class(name)


class _Graph:
    def __init__(
        self,
        spec: Spec,
        doc: Located,
        targets: Mapping[str, tuple[Any, BaseModel]],
        entries: Mapping[str, BaseModel],
    ) -> None:
        self.spec, self.doc, self.targets, self.entries = spec, doc, targets, entries
        self.steps: list[PublishStep] = []
        self.problems: list[str] = []
        self.visited: set[str] = set()
        self.children: dict[str, list[str]] = {}
        for name, settings in entries.items():
            self.children.setdefault(str(getattr(settings, "source", "")), []).append(name)

    def _where(self, name: str) -> str:
        return f"{self.doc.position(('publish', name, 'from'))}: {field_path(('publish', name, 'from'))}"

    def _maker(self, node: str) -> tuple[Any, BaseModel | None, str | None, tuple[str, ...], str]:
        """(plugin class, settings, artifact kind, spec location, description) of what makes
        `node`'s artifact; no class for a target whose builder is unknown (reported already)."""
        if node in self.entries:
            settings = self.entries[node]
            name = str(getattr(settings, "publisher", "?"))
            cls = _publisher_class(name)
            kind = getattr(cls, "produces", None)
            return cls, settings, kind, ("publish", node), f"publish entry {node!r} ({name})"
        cls, settings = self.targets.get(node, (None, None))
        kind = getattr(cls, "produces", IMAGE_FILE)
        described = f"target {node!r} builds with {getattr(settings, 'builder', '?')!r}, which"
        return cls, settings, kind, ("targets", node), described

    def walk(self, node: str, target: str) -> None:
        cls, settings, kind, loc, described = self._maker(node)
        if cls is not None and settings is not None:
            self._shorthand(node, target, cls, settings, loc)
        for child in self.children.get(node, ()):
            if child in self.visited:
                continue
            self.visited.add(child)
            child_settings = self.entries[child]
            publisher = str(getattr(child_settings, "publisher", "?"))
            accepts = getattr(_publisher_class(publisher), "accepts", frozenset({IMAGE_FILE}))
            if cls is not None and kind not in accepts:
                makes = f"an artifact of kind {kind!r}" if kind else "nothing to publish further"
                takes = " or ".join(repr(k) for k in sorted(accepts))
                self.problems.append(
                    f"{self._where(child)}: {described} makes {makes}; publisher {publisher!r} takes {takes}"
                )
            self.steps.append(PublishStep(child, publisher, child_settings, node, target))
            self.walk(child, target)

    def _shorthand(
        self, owner: str, target: str, cls: Any, settings: BaseModel, loc: tuple[str, ...]
    ) -> None:
        publisher = getattr(cls, "publish_shorthand", None)
        inline = getattr(settings, SHORTHAND_FIELD, None)
        if not publisher or not isinstance(inline, BaseModel):
            return
        model = _publisher_class(publisher).Settings
        own = set(type(inline).model_fields) | {"publisher", "source", SHORTHAND_FIELD}
        # what the publisher also takes from its owner (e.g. `aws`: the same profile and retries)
        inherited = {
            key: getattr(settings, key)
            for key in model.model_fields
            if key in type(settings).model_fields and key not in own
        }
        data = {**inherited, **inline.model_dump(), "publisher": publisher, "source": owner}
        try:
            step_settings = model.model_validate(data)
        except ValidationError as exc:
            self.problems += problems_from_validation(exc, self.doc, model, (*loc, SHORTHAND_FIELD))
            return
        name = f"{owner}.{SHORTHAND_FIELD}"
        self.steps.append(PublishStep(name, publisher, step_settings, owner, target, refines=True))

    def check_sources(self) -> None:
        for name, settings in self.entries.items():
            source = str(getattr(settings, "source", None))
            if source in self.spec.targets and source in self.entries:
                self.problems.append(
                    f"{self._where(name)}: {source!r} names both a target and a publish entry; rename one"
                )
            elif source not in self.spec.targets and source not in self.entries:
                known = [*self.spec.targets, *self.entries]
                self.problems.append(
                    f"{self._where(name)}: no target or publish entry {source!r}{suggestion(source, known)}"
                )

    def check_cycles(self) -> None:
        for name in self.entries:
            if name in self.visited:
                continue
            chain, node = [name], str(getattr(self.entries[name], "source", ""))
            while node in self.entries and node not in chain:
                chain.append(node)
                node = str(getattr(self.entries[node], "source", ""))
            if node in chain:
                self.problems.append(f"{self._where(name)}: a cycle: {' -> '.join([*chain, node])}")


def publish_steps(
    spec: Spec,
    doc: Located,
    targets: Mapping[str, tuple[Any, BaseModel]],
    entries: Mapping[str, BaseModel],
) -> tuple[tuple[PublishStep, ...], list[str]]:
    """Every publish step in run order (per target: its shorthand, then each entry `from:`
    it, depth first), and the located problems: unknown or ambiguous `from:`, kinds a
    publisher can't take, cycles. `targets`: each valid target's (builder class, settings)."""
    graph = _Graph(spec, doc, targets, entries)
    graph.check_sources()
    for target in spec.targets:
        graph.walk(target, target)
    graph.check_cycles()
    return tuple(graph.steps), graph.problems
