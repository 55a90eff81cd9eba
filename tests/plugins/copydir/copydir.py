"""The smallest publisher worth writing, kept as the example of imgpipe's publisher
protocol: `publisher: copy-to-dir` copies a target's image file into a directory (a file
share, a web server's root). It is this one module plus the entry point in
`copydir-0.dist-info/entry_points.txt` (a package would declare it in its pyproject.toml
under `[project.entry-points."imgpipe.publishers"]`); imgpipe's pipeline names no publisher.

All or nothing, like every publisher: the copy is written under a partial name, removed
if the target fails later (or by `imgpipe gc` after a kill -9: it is journaled), and
renamed into place only when the whole target succeeded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.core import IMAGE_FILE, Artifact, ImageFile, TargetContext
from imgpipe.journal import remove_path
from imgpipe.publish.base import Publication, expect


class CopySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    publisher: Literal["copy-to-dir"] = Field(description="Copy the image file into a directory.")
    source: str = Field(alias="from", description="The target whose image file is copied.")
    directory: Path = Field(description="Where the copy goes, relative to the spec; made if missing.")


class CopyToDir:
    Settings: ClassVar[type[BaseModel]] = CopySettings
    publisher_type: ClassVar[str] = "example.copy-to-dir"
    accepts: ClassVar[frozenset[str]] = frozenset({IMAGE_FILE})
    produces: ClassVar[str | None] = None
    cloud_init_datasources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None:
        self.name, self.ctx = name, ctx
        self.settings: CopySettings = settings  # type: ignore[assignment]

    def publish(self, artifact: Artifact) -> Publication:
        image = expect(artifact, ImageFile, self)
        directory = self.ctx.loaded.directory / self.settings.directory
        directory.mkdir(parents=True, exist_ok=True)
        dest, partial = directory / image.name, directory / f".{image.name}.partial"
        self.ctx.undo.push(
            f"copy {partial}",
            lambda: remove_path(str(partial)),
            journal=("published-copy", remove_path, {"path": str(partial)}),
        )
        shutil.copyfile(image.partial, partial)
        self.ctx.undo.on_commit(lambda: partial.replace(dest))
        return Publication(self.name, self.publisher_type, str(dest), {"sha256": image.sha256})
