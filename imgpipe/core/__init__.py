"""The core every builder, publisher and provisioning step imports: one target's context,
the artifacts a build makes, the undo stack, and waits that end on Ctrl-C/SIGTERM.

Nothing here knows a cloud or a hypervisor: the core imports no builder, publisher or
cloud module (a unit test holds the layering)."""

from imgpipe.core.artifact import AMI, IMAGE_FILE, Artifact, CloudImage, ImageFile, RegionImage
from imgpipe.core.buildid import build_started, new_build_id
from imgpipe.core.cancel import checkpoint, sleep_unless_cancelled
from imgpipe.core.context import TargetContext
from imgpipe.core.ssh import SSHEndpoint
from imgpipe.core.undo import Rollback

__all__ = [
    "AMI",
    "IMAGE_FILE",
    "Artifact",
    "CloudImage",
    "ImageFile",
    "RegionImage",
    "Rollback",
    "SSHEndpoint",
    "TargetContext",
    "build_started",
    "checkpoint",
    "new_build_id",
    "sleep_unless_cancelled",
]
