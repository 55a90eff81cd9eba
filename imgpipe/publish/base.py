"""The publisher protocol: what happens to a target's captured image before the
bake calls it done (import it as an AMI, copy, share ...). Publishers are plugins
found through the `imgpipe.publishers` entry point group, like builders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from imgpipe.plugins import plugin_class, plugin_names

if TYPE_CHECKING:
    from imgpipe.builders.base import TargetContext


@dataclass(frozen=True)
class Publication:
    """One published image, as the manifest records it (Packer's artifact_id form)."""

    publisher: str  # the spec's name for this publish entry
    publisher_type: str
    artifact_id: str  # e.g. "us-east-1:ami-0abc,eu-west-1:ami-0def"
    data: dict[str, Any] = field(default_factory=dict)


class Publisher(Protocol):
    Settings: ClassVar[type[BaseModel]]
    publisher_type: ClassVar[str]
    cloud_init_datasources: ClassVar[tuple[str, ...]]  # what the seal adds to the image's cloud-init

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None: ...

    def publish(self, image: Path, image_name: str) -> Publication:
        """Publish all or nothing: on any failure or interrupt, remove what was made, then raise."""
        ...


GROUP = "imgpipe.publishers"


def publisher_names() -> list[str]:
    return plugin_names(GROUP)


def publisher_class(name: str) -> type[Publisher]:
    return plugin_class(GROUP, name)
