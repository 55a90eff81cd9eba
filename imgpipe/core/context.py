"""One target's build context, handed to the builder, each publisher and provisioning."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from imgpipe.core.undo import Rollback
from imgpipe.redact import Redactor

if TYPE_CHECKING:
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources
    from imgpipe.spec.load import LoadedSpec


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
    undo: Rollback = field(default_factory=Rollback)
    # What the target's plugins share, keyed by the plugin's own key: e.g. one AWS session
    # per settings, so a builder and the publishers after it share credentials and retries.
    shared: dict[Any, Any] = field(default_factory=dict)

    @property
    def image_name(self) -> str:
        """The name this target's images get where no setting names them."""
        return f"{self.loaded.spec.name}-{self.target}-{self.build_id}"
