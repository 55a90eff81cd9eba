"""A third-party builder plugin, for tests that run a real `imgpipe bake` subprocess:
`builder: fake` boots nothing and captures a qcow2 of random data (random, so the
stream-optimized VMDK made for the import does not shrink it below several S3 parts).

Found through its `fakebuilder-0.dist-info/entry_points.txt` once this directory is on
the subprocess's PYTHONPATH: imgpipe loads it the way it loads any installed plugin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.capture import sha256_file
from imgpipe.core import IMAGE_FILE, ImageFile, SSHEndpoint, TargetContext
from imgpipe.errors import BuildError, Interrupted, run_command
from imgpipe.journal import remove_path

MiB = 1024 * 1024


class FakeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    builder: Literal["fake"] = Field(description="Capture random data; boot nothing.")
    image_mib: int = Field(1, ge=1, description="MiB of random data in the captured image.")
    capture_delay_s: float = Field(0, ge=0, description="Wait this long before capturing (to be killed).")
    fail: bool = Field(False, description="Fail the capture (a bake that keeps failing).")
    fail_times: int = Field(0, ge=0, description="Fail the first N captures (for --on-error ask's retry).")


class FakeBuilder:
    Settings: ClassVar[type[BaseModel]] = FakeSettings
    builder_type: ClassVar[str] = "test.fake"
    produces: ClassVar[str] = IMAGE_FILE

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self.settings: FakeSettings = ctx.settings  # type: ignore[assignment]
        self.captures = 0

    def prepare(self) -> dict[str, object]:
        return {"kind": "fake"}

    def launch(self) -> SSHEndpoint:
        key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== fake"  # never used: no roles, no seal
        return SSHEndpoint("127.0.0.1", 1, "root", Path("none"), Path("none"), "SHA256:none", key)

    def stop(self) -> None:
        pass

    def capture(self, dest_dir: Path, basename: str) -> ImageFile:
        if self.ctx.cancel.wait(self.settings.capture_delay_s):
            raise Interrupted("interrupted")
        self.captures += 1
        if self.settings.fail or self.captures <= self.settings.fail_times:
            raise BuildError("the fake builder was told to fail")
        raw = self.ctx.workdir / "disk.raw"
        raw.write_bytes(os.urandom(self.settings.image_mib * MiB))
        partial = dest_dir / f".{basename}.qcow2.partial"
        self.ctx.resources.track("partial-image", remove_path, path=str(partial))
        run_command(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(partial)])
        raw.unlink()
        return ImageFile(partial, f"{basename}.qcow2", "qcow2", sha256_file(partial), partial.stat().st_size)

    def debug_hint(self) -> str:
        return "the fake builder keeps nothing"
