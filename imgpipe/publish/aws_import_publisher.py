"""`publisher: aws-import`: a local target's qcow2/raw becomes an AMI (S3 upload,
import_snapshot, register_image), then is tagged, copied and shared.

Everything it makes carries the build's tags like the EC2 builder's resources, with
`imgpipe:state: building` until the whole target succeeded, then `published`; Ctrl-C and
SIGTERM (the bake's cancel event) end every upload, poll and wait at once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.aws import buildres
from imgpipe.aws.session import AwsSession, AwsSettings
from imgpipe.publish.ami import PublishSettings, RegionImage
from imgpipe.publish.aws_import import ImageImporter, ImportSettings
from imgpipe.publish.base import Publication
from imgpipe.publish.rollback import step

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
        ctx = self.ctx
        tags = buildres.image_tags(ctx.build_id, ctx.target, ctx.loaded.spec.name, self.settings.publish.tags)
        session = self.make_session()
        importer = ImageImporter(
            session,
            self.settings.import_,
            emit=self.emit,
            resources=ctx.resources,
            progress=self._progress,
            cancel=ctx.cancel,
        )
        publish = self.settings.publish.model_copy(update={"tags": tags})
        result = importer.import_image(image, image_name, publish=publish, rollback=ctx.undo)
        ctx.undo.on_commit(lambda: self._mark_published(session, result.images))
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

    @staticmethod
    def _mark_published(session: AwsSession, images: tuple[RegionImage, ...]) -> None:
        for image in images:
            with step("tag", image.region):
                ec2 = session.client("ec2", image.region)
                buildres.mark_published(ec2, [image.image_id, *image.snapshot_ids])

    def _progress(self, sent: int, total: int) -> None:
        pct = sent * 100 // total if total else 100
        if pct // 10 > self._reported // 10:
            self._reported = pct
            self.emit.message(f"uploading to S3: {sent >> 20}/{total >> 20} MiB ({pct}%)")
