"""`publisher: aws-import`: a local target's qcow2/raw becomes an AMI (S3 upload,
import_snapshot, register_image), then is tagged, copied and shared.

Everything it makes carries the build's tags like the EC2 builder's resources, with
`imgpipe:state: building` until the whole target succeeded, then `published`; Ctrl-C and
SIGTERM (the bake's cancel event) end every upload, poll and wait at once. It makes an AMI
in one region; its `publish:` settings (tags, copies, shares, SSM) are shorthand for an
`ami` publisher from it, which refines that AMI in place."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.aws import buildres
from imgpipe.aws.distribution import PublishSettings
from imgpipe.aws.session import AwsSession, AwsSettings, shared_session
from imgpipe.core.artifact import AMI, IMAGE_FILE, Artifact, CloudImage, ImageFile, profile_data
from imgpipe.publish.aws_import import ImageImporter, ImportSettings
from imgpipe.publish.base import Publication, expect

if TYPE_CHECKING:
    from imgpipe.core.context import TargetContext


class AwsImportPublisherSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    publisher: Literal["aws-import"] = Field(description="Import a local image into EC2 as an AMI.")
    source: str = Field(alias="from", description="The target whose captured image is imported.")
    aws: AwsSettings = Field(default_factory=AwsSettings, description="Region, profile and retries.")
    import_: ImportSettings = Field(alias="import", description="S3 bucket and AMI registration.")
    publish: PublishSettings = Field(
        default_factory=PublishSettings,
        description="Tags, more regions, sharing, SSM pointer: shorthand for an `ami` publisher "
        "from this entry.",
    )


class AwsImportPublisher:
    Settings: ClassVar[type[BaseModel]] = AwsImportPublisherSettings
    publisher_type: ClassVar[str] = "imgpipe.aws-import"
    accepts: ClassVar[frozenset[str]] = frozenset({IMAGE_FILE})
    produces: ClassVar[str | None] = AMI
    publish_shorthand: ClassVar[str] = "ami"  # its `publish:` settings are an `ami` publisher's
    cloud_init_datasources: ClassVar[tuple[str, ...]] = ("Ec2",)  # or instances get no SSH keys

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None:
        self.name, self.ctx = name, ctx
        self.settings: AwsImportPublisherSettings = settings  # type: ignore[assignment]
        self.emit = ctx.emit
        self._reported = -1

    def make_session(self) -> AwsSession:
        return AwsSession(self.settings.aws)

    def publish(self, artifact: Artifact) -> Publication:
        image_file = expect(artifact, ImageFile, self)
        ctx = self.ctx
        tags = buildres.image_tags(ctx.build_id, ctx.target, ctx.loaded.spec.name, self.settings.publish.tags)
        session = shared_session(ctx, self.settings.aws, self.make_session)
        importer = ImageImporter(
            session,
            self.settings.import_,
            emit=self.emit,
            resources=ctx.resources,
            progress=self._progress,
            cancel=ctx.cancel,
        )
        image = importer.import_to_ami(image_file.partial, ctx.image_name, tags=tags, rollback=ctx.undo)
        buildres.mark_published_on_commit(ctx.undo, session, [image])
        made = CloudImage(AMI, ctx.image_name, (image,), tags, profile_data(session.settings.profile))
        return Publication.of(self.name, self.publisher_type, made)

    def _progress(self, sent: int, total: int) -> None:
        pct = sent * 100 // total if total else 100
        if pct // 10 > self._reported // 10:
            self._reported = pct
            self.emit.message(f"uploading to S3: {sent >> 20}/{total >> 20} MiB ({pct}%)")
