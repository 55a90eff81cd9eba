"""The builder protocol: what the pipeline needs from any place a build VM can run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from imgpipe.redact import Redactor

if TYPE_CHECKING:
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources
    from imgpipe.publish.rollback import Rollback
    from imgpipe.spec.load import LoadedSpec


@dataclass(frozen=True)
class SSHEndpoint:
    """How Ansible reaches the build VM; the host key is pinned in known_hosts."""

    host: str
    port: int
    user: str
    private_key: Path
    known_hosts: Path
    host_key_fingerprint: str
    authorized_key: str  # the build key's public half, removed again by the seal
    host_keys: tuple[str, ...] = ()  # public halves of the host keys imgpipe injected

    def ssh_argv(self, *options: str) -> list[str]:
        """ssh to the build VM. `-F /dev/null`: the operator's ~/.ssh/config (a ProxyJump,
        ControlPath or User there) must never steer build traffic."""
        from imgpipe.builders.sshkeys import ssh_path_option

        return [
            "ssh",
            "-F",
            "/dev/null",
            *options,
            "-p",
            str(self.port),
            "-i",
            str(self.private_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            ssh_path_option("UserKnownHostsFile", self.known_hosts),
            "-o",
            "BatchMode=yes",
            f"{self.user}@{self.host}",
        ]


@dataclass(frozen=True)
class Artifact:
    """A captured image, not yet the product until the whole target succeeds: a local file
    under a partial name, or a cloud image whose undo stays on the target's undo stack."""

    partial: Path | None  # None for an image that lives in a cloud
    name: str  # final file name inside the output directory, or the cloud image's name
    format: str
    sha256: str = ""
    size: int = 0
    artifact_id: str = ""  # Packer's artifact_id; a local file's defaults to its name
    data: dict[str, Any] = field(default_factory=dict)  # more manifest fields (e.g. AMIs per region)


def _new_rollback() -> Rollback:
    from imgpipe.publish.rollback import Rollback

    return Rollback()


@dataclass
class TargetContext:
    """Everything one target's build needs, handed to each step."""

    build_id: str
    target: str
    loaded: LoadedSpec
    settings: BaseModel
    workdir: Path
    log_dir: Path
    resources: Resources
    emit: Emitter
    cancel: threading.Event = field(default_factory=threading.Event)
    redact: Redactor = field(default_factory=lambda: Redactor(()))
    # What publishing changed (images, copies, shares, SSM values), undone unless the whole
    # target succeeds: a target that fails late reports no half-published image.
    undo: Rollback = field(default_factory=_new_rollback)


class Builder(Protocol):
    """prepare -> launch -> (provision) -> stop -> capture; destroy is the journal's job."""

    Settings: ClassVar[type[BaseModel]]
    builder_type: ClassVar[str]
    local_image: ClassVar[bool]  # capture() writes a file that publishers (aws-import) can take

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
        """Turn the stopped VM's disk into a standalone image (a file in dest_dir, or a cloud image)."""
        ...

    def debug_hint(self) -> str:
        """How to reach a VM kept after a failure (--on-error abort)."""
        ...
