"""The builder protocol: what the pipeline needs from any place a build VM can run.
A builder is one module plus an entry point in the `imgpipe.builders` group."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import BaseModel

from imgpipe.core.artifact import Artifact
from imgpipe.core.context import TargetContext
from imgpipe.core.ssh import SSHEndpoint


class Builder(Protocol):
    """prepare -> launch -> (provision) -> stop -> capture; destroy is the journal's job."""

    Settings: ClassVar[type[BaseModel]]
    builder_type: ClassVar[str]
    produces: ClassVar[str]  # the kind of artifact capture() returns (core.artifact.IMAGE_FILE, AMI)
    # Optional: `publish_shorthand: ClassVar[str]` names the publisher that the Settings'
    # `publish` field is shorthand for (the EC2 builder's: `ami`).

    def __init__(self, ctx: TargetContext) -> None: ...

    def prepare(self) -> dict[str, object]:
        """Resolve the source (cached base image, AMI ...); return what to record of it."""
        ...

    def launch(self) -> SSHEndpoint:
        """Start the build VM and return once SSH answers with the pinned host key."""
        ...

    # Optional: `finish_provisioning() -> None`, called after provisioning and before the
    # seal, undoes what the builder set up only for provisioning (the local builder's
    # package proxy). Builders without one need nothing.

    def stop(self) -> None:
        """Power the VM off cleanly within a deadline, then force it."""
        ...

    def capture(self, dest_dir: Path, basename: str) -> Artifact:
        """Turn the stopped VM's disk into a standalone image: an ImageFile under a partial
        name in dest_dir, or a CloudImage whose undo is on ctx.undo until the target succeeds."""
        ...

    def debug_hint(self) -> str:
        """How to reach a VM kept after a failure (--on-error abort)."""
        ...
