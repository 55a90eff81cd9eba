"""The publisher protocol: what happens to an artifact a target made before the bake calls
it done (import a file as an AMI, copy an AMI to more regions, copy a file somewhere ...).

A publisher declares the artifact kinds it `accepts` (spec validation refuses a `from:`
whose artifact it can't take) and the kind it `produces`, if any, which a later publisher
can take in turn. Publishers are plugins found through the `imgpipe.publishers` entry
point group, like builders: a new one is one module plus an entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel

from imgpipe.errors import BuildError
from imgpipe.plugins import plugin_class, plugin_names

if TYPE_CHECKING:
    from imgpipe.core.artifact import Artifact
    from imgpipe.core.context import TargetContext


@dataclass(frozen=True)
class Publication:
    """One published artifact, as the manifest records it (Packer's artifact_id form)."""

    publisher: str  # the spec's name for this publish entry
    publisher_type: str
    artifact_id: str  # e.g. "us-east-1:ami-0abc,eu-west-1:ami-0def"
    data: dict[str, Any] = field(default_factory=dict)
    artifact: Artifact | None = None  # what it made, for the publishers `from:` it

    @classmethod
    def of(cls, publisher: str, publisher_type: str, artifact: Artifact) -> Publication:
        return cls(publisher, publisher_type, artifact.artifact_id, artifact.manifest_data(), artifact)


class Publisher(Protocol):
    Settings: ClassVar[type[BaseModel]]  # has `publisher` and `from` (alias of `source`)
    publisher_type: ClassVar[str]
    accepts: ClassVar[frozenset[str]]  # artifact kinds it takes (core.artifact.IMAGE_FILE, AMI ...)
    produces: ClassVar[str | None]  # the kind of artifact it makes, or None
    cloud_init_datasources: ClassVar[tuple[str, ...]]  # what the seal adds to the image's cloud-init

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None: ...

    def publish(self, artifact: Artifact) -> Publication:
        """Publish all or nothing: push every change's undo on `ctx.undo` as it is made, so a
        later failure of the target removes it; commit-time work goes in `ctx.undo.on_commit`."""
        ...


GROUP = "imgpipe.publishers"

A = TypeVar("A")


def publisher_names() -> list[str]:
    return plugin_names(GROUP)


def publisher_class(name: str) -> type[Publisher]:
    return plugin_class(GROUP, name)


def expect(artifact: Artifact, cls: type[A], publisher: Publisher) -> A:
    """The artifact as the type the publisher works on. Spec validation already matched the
    kinds; this catches a third-party builder whose capture() returned something else."""
    if not isinstance(artifact, cls):
        raise BuildError(
            f"publisher {type(publisher).__name__} takes {sorted(publisher.accepts)}; "
            f"it was given a {artifact.kind!r} artifact ({type(artifact).__name__})"
        )
    return artifact
