"""`publisher: ami`: tag, copy, share and point SSM at any AMI a target or a publisher
made (`builder: aws`, `publisher: aws-import`). Their own `publish:` settings are
shorthand for this publisher with `from:` them; it then refines their AMI in place."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.aws import buildres
from imgpipe.aws.distribution import PublishSettings
from imgpipe.aws.session import AwsSession, AwsSettings, shared_session
from imgpipe.core.artifact import AMI, Artifact, CloudImage, profile_data
from imgpipe.publish.ami import AmiPublisher
from imgpipe.publish.base import Publication, expect

if TYPE_CHECKING:
    from imgpipe.core.context import TargetContext


class AmiPublisherSettings(PublishSettings):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    publisher: Literal["ami"] = Field(description="Tag, copy, share and point SSM at an AMI.")
    source: str = Field(alias="from", description="The target or publish entry whose AMI is published.")
    aws: AwsSettings = Field(default_factory=AwsSettings, description="Profile and retries.")


class AmiPublisherPlugin:
    Settings: ClassVar[type[BaseModel]] = AmiPublisherSettings
    publisher_type: ClassVar[str] = "imgpipe.ami"
    accepts: ClassVar[frozenset[str]] = frozenset({AMI})
    produces: ClassVar[str | None] = AMI
    cloud_init_datasources: ClassVar[tuple[str, ...]] = ()  # the AMI already boots in EC2

    def __init__(self, name: str, settings: BaseModel, ctx: TargetContext) -> None:
        self.name, self.ctx = name, ctx
        self.settings: AmiPublisherSettings = settings  # type: ignore[assignment]

    def make_session(self) -> AwsSession:
        return AwsSession(self.settings.aws)

    def publish(self, artifact: Artifact) -> Publication:
        ami = expect(artifact, CloudImage, self)
        ctx = self.ctx
        session = shared_session(ctx, self.settings.aws, self.make_session)
        tags = buildres.image_tags(
            ctx.build_id, ctx.target, ctx.loaded.spec.name, {**ami.tags, **self.settings.tags}
        )
        job = AmiPublisher(
            session,
            self.settings.model_copy(update={"tags": tags}),
            emit=ctx.emit,
            resources=ctx.resources,
            cancel=ctx.cancel,
        )
        result = job.publish(ami.origin.image_id, ami.origin.region, ctx.undo)
        # the origin is its maker's to mark published; the copies are this publisher's
        buildres.mark_published_on_commit(ctx.undo, session, result.images[1:])
        published = CloudImage(
            AMI,
            ami.name,
            result.images,
            tags,
            {
                "shared_with": list(result.shared_with),
                "ssm_parameter": result.ssm_parameter,  # the `latest` channel's pointer
                **profile_data(session.settings.profile),
            },
        )
        return Publication.of(self.name, self.publisher_type, published)
