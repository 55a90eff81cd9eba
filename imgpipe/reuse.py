"""A good build's artifact, taken up again: when only publish settings changed, the
publishers run on what that build made instead of baking it again."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.core.artifact import AMI, Artifact, CloudImage, ImageFile, RegionImage
from imgpipe.errors import BuildError
from imgpipe.journal import remove_path

if TYPE_CHECKING:
    from imgpipe.core.context import TargetContext
    from imgpipe.sbom import Package


@dataclass(frozen=True)
class Reuse:
    build_id: str
    record: dict[str, Any]  # its catalog record: the manifest record plus output_dir

    @property
    def output_dir(self) -> Path:
        return Path(self.record.get("output_dir") or ".")

    def artifact(self, ctx: TargetContext, out: Path) -> Artifact:
        """The earlier build's artifact for this build: an image file hard-linked (or copied)
        into this build's output under a partial name, or the AMIs it recorded."""
        files = self.record.get("files") or []
        if files:
            name = str(files[0]["name"])
            partial = out / f".{name}.partial"
            ctx.resources.track("partial-image", remove_path, path=str(partial))
            try:
                os.link(self.output_dir / name, partial)
            except OSError:  # another file system
                shutil.copyfile(self.output_dir / name, partial)
            fmt = name.rsplit(".", 1)[-1]
            return ImageFile(partial, name, fmt, str(files[0]["sha256"]), int(files[0]["size"]))
        images = (self.record.get("data") or {}).get("images") or []
        if images:
            origin = RegionImage(**images[0])  # publishing starts again from where it was made
            return CloudImage(AMI, f"{ctx.loaded.spec.name}-{ctx.target}", (origin,))
        raise BuildError(f"build {self.build_id} recorded no artifact that can be published again")

    def packages(self) -> list[Package] | None:
        """The packages its SBOM lists: this build's SBOM describes the same image."""
        sbom = self.record.get("sbom")
        if not sbom:
            return None
        from imgpipe.sbom import read_sbom

        return list(read_sbom(self.output_dir / sbom["file"]).values())
