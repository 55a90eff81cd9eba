"""The builder protocol: what the pipeline needs from any place a build VM can run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import BaseModel

from imgpipe.redact import Redactor

if TYPE_CHECKING:
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources
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

    def ssh_argv(self, *options: str) -> list[str]:
        return [
            "ssh",
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
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "BatchMode=yes",
            f"{self.user}@{self.host}",
        ]


@dataclass(frozen=True)
class Artifact:
    """A captured image, still under a partial name until the whole target succeeds."""

    partial: Path
    name: str  # final file name inside the output directory
    format: str
    sha256: str
    size: int


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


class Builder(Protocol):
    """prepare -> launch -> (provision) -> stop -> capture; destroy is the journal's job."""

    Settings: ClassVar[type[BaseModel]]
    builder_type: ClassVar[str]

    def __init__(self, ctx: TargetContext) -> None: ...

    def prepare(self) -> dict[str, object]:
        """Resolve the source (cached base image, AMI ...); return what to record of it."""
        ...

    def launch(self) -> SSHEndpoint:
        """Start the build VM and return once SSH answers with the pinned host key."""
        ...

    def stop(self) -> None:
        """Power the VM off cleanly within a deadline, then force it."""
        ...

    def capture(self, dest_dir: Path, basename: str) -> Artifact:
        """Turn the stopped VM's disk into a standalone image in dest_dir."""
        ...

    def debug_hint(self) -> str:
        """How to reach a VM kept after a failure (--on-error abort)."""
        ...
