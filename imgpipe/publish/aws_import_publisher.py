"""`publisher: aws-import`: a local target's qcow2/raw becomes an AMI (S3 upload,
import_snapshot, register_image), then is tagged, copied and shared."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.aws.session import AwsSession, AwsSettings
from imgpipe.publish.ami import PublishSettings
from imgpipe.publish.aws_import import ImageImporter, ImportSettings
from imgpipe.publish.base import Publication

if TYPE_CHECKING:
    from imgpipe.builders.base import TargetContext


class AwsImportPublisherSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    publisher: Literal["aws-import"] = Field(description="Import a local image into EC2 as an AMI.")
    source: str = Field(alias="from", description="The target whose captured image is imported.")
    aws: AwsSettings = Field(default_factory=AwsSettings, description="Region, profile and retries.")
    import_: ImportSettings = Field(alias="import", description="S3 bucket and AMI registration.")
    publish: PublishSettings = Field(
        default_factory=PublishSettings, description="Tags, more regions, sharing, SSM pointer."
    )


class AwsImportPublisher:
    Settings: ClassVar[type[BaseModel]] = AwsImportPublisherSettings
    publisher_type: ClassVar[str] = "imgpipe.aws-import"
    cloud_init_datasources: ClassVar[tuple[str, ...]] = ("Ec2",)  # or instances get no SSH keys

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None:
        self.name, self.ctx = name, ctx
        self.settings: AwsImportPublisherSettings = settings  # type: ignore[assignment]
        self.emit = ctx.emit
        self._reported = -1

    def make_session(self) -> AwsSession:
        return AwsSession(self.settings.aws)

    def publish(self, image: Path, image_name: str) -> Publication:
        importer = ImageImporter(
            self.make_session(),
            self.settings.import_,
            emit=self.emit,
            resources=self.ctx.resources,
            progress=self._progress,
        )
        result = importer.import_image(
            image, image_name, publish=self.settings.publish, rollback=self.ctx.undo
        )
        return Publication(
            self.name,
            self.publisher_type,
            result.artifact_id,
            {
                "images": [img.model_dump(mode="json") for img in result.images],
                "shared_with": list(result.shared_with),
                "ssm_parameter": result.ssm_parameter,
            },
        )

    def _sleep(self, seconds: float) -> None:
        """Waits between polls end early on Ctrl-C; the importer then rolls back."""
        if self.ctx.cancel.wait(seconds):
            raise KeyboardInterrupt

    def _progress(self, sent: int, total: int) -> None:
        pct = sent * 100 // total if total else 100
        if pct // 10 > self._reported // 10:
            self._reported = pct
            self.emit.message(f"uploading to S3: {sent >> 20}/{total >> 20} MiB ({pct}%)")
