"""What a build makes, in one model: a builder's capture() returns an artifact, and each
publisher takes artifacts of the kinds it declares (and may make a new one, which the
next publisher can take). The manifest and the catalog record every artifact the same way.

Kinds are plain strings so a plugin can bring its own (e.g. an OpenStack image)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

IMAGE_FILE = "image-file"  # a disk image file on this machine (qcow2, raw)
AMI = "ami"  # an EC2 machine image, in one or more regions


class Artifact(Protocol):
    """The contract every artifact keeps; ImageFile and CloudImage are the built-in ones."""

    @property
    def kind(self) -> str: ...

    @property
    def artifact_id(self) -> str:
        """Packer's artifact_id: a file name, or `region:ami-id,region:ami-id`."""
        ...

    def manifest_data(self) -> dict[str, Any]:
        """What the manifest records of it, beyond its id."""
        ...


@dataclass(frozen=True)
class ImageFile:
    """A captured disk image: under a partial name until the whole target succeeds, then
    renamed to `name` in the output directory (a failed target leaves no image)."""

    kind: ClassVar[str] = IMAGE_FILE

    partial: Path
    name: str  # final file name inside the output directory
    format: str  # qcow2, raw
    sha256: str
    size: int

    @property
    def artifact_id(self) -> str:
        return self.name

    def manifest_data(self) -> dict[str, Any]:
        return {}


class RegionImage(BaseModel):
    """One cloud image in one region with the snapshots behind it."""

    model_config = ConfigDict(frozen=True)

    region: str = Field(description="Region the image lives in")
    image_id: str = Field(description="The image id (an AMI id)")
    snapshot_ids: tuple[str, ...] = Field((), description="Snapshots the image is made of")

    @property
    def artifact_id(self) -> str:
        """Packer's `region:ami-id` form."""
        return f"{self.region}:{self.image_id}"


def profile_data(profile: str | None) -> dict[str, str]:
    """A cloud image's manifest data naming the AWS profile it was made with (when one was
    named), so promote, revoke and prune reach it the same way."""
    return {"profile": profile} if profile else {}


@dataclass(frozen=True)
class CloudImage:
    """A machine image in a cloud: the region it was made in first, then its copies.
    Until the target succeeds its undo stays on the target's undo stack."""

    kind: str  # AMI, or a plugin's own kind
    name: str
    images: tuple[RegionImage, ...]
    tags: Mapping[str, str] = field(default_factory=dict)  # what it is tagged with; copies get them too
    data: Mapping[str, Any] = field(default_factory=dict)  # more manifest fields (shares, pointers)

    @property
    def origin(self) -> RegionImage:
        return self.images[0]

    @property
    def artifact_id(self) -> str:
        return ",".join(image.artifact_id for image in self.images)

    def manifest_data(self) -> dict[str, Any]:
        return {"images": [image.model_dump(mode="json") for image in self.images], **self.data}
