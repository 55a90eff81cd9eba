"""Publish an AMI that exists in one region: tag it and its snapshots, copy it to more
regions (re-tagging each copy and its snapshots), share it, and point an SSM parameter at
it, all or nothing: a failure or Ctrl-C anywhere removes what this publish made."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.aws import images as amis
from imgpipe.aws.distribution import ACCOUNT, PublishSettings, launch_permissions
from imgpipe.aws.errors import error_code, error_message, is_not_found, step
from imgpipe.aws.job import AwsJob
from imgpipe.core.artifact import RegionImage
from imgpipe.core.undo import Rollback


class PublishResult(BaseModel):
    """What a successful publish made; every field describes state that exists now."""

    model_config = ConfigDict(frozen=True)

    images: tuple[RegionImage, ...] = Field(description="The AMI per region, the source region first")
    shared_with: tuple[str, ...] = Field(
        (), description="Accounts and organizations granted launch permission"
    )
    ssm_parameter: str | None = Field(None, description="SSM parameter holding the AMI id in each region")
    ssm_data_type: str | None = Field(
        None, description="`aws:ec2:image`, or `text` where the endpoint refused that data type"
    )

    @property
    def artifact_ids(self) -> list[str]:
        return [image.artifact_id for image in self.images]

    @property
    def artifact_id(self) -> str:
        """Packer's artifact_id for a multi-region AMI: `region:ami,region:ami`."""
        return ",".join(self.artifact_ids)


class AmiPublisher(AwsJob):
    """Publishes an existing AMI according to PublishSettings.

    `publish()` is the whole job; the verbs it runs (`tag_source`, `copy_to_regions`,
    `share`, `point_ssm_parameter`) each push their undo onto the Rollback they are given."""

    settings: PublishSettings

    def publish(
        self, image_id: str, region: str | None = None, rollback: Rollback | None = None
    ) -> PublishResult:
        """Tag, copy, share and point SSM at `image_id` (in `region`, default the session's).
        On any failure everything this call made is removed and PublishError is raised;
        on KeyboardInterrupt the rollback runs and the interrupt propagates.

        With `rollback` (the bake's undo stack for the target) the undos stay there, and
        the caller commits them once the whole target succeeded; a failure here runs all of it."""
        region = region or self.session.region
        own = rollback is None
        rollback = rollback or Rollback(self.resources)
        try:
            source = self.tag_source(image_id, region, rollback)
            images = {region: source, **self.copy_to_regions(source, rollback)}
            self.share(images, rollback)
            data_type = self.point_ssm_parameter(images, rollback)
        except BaseException as exc:
            self._roll_back_and_raise(exc, rollback, f"publish of {image_id}")
        if own:
            rollback.commit()
        return PublishResult(
            images=tuple(images.values()),
            shared_with=tuple(self.settings.share_with),
            ssm_parameter=self.settings.ssm_parameter,
            ssm_data_type=data_type,
        )

    def tag_source(self, image_id: str, region: str, rollback: Rollback) -> RegionImage:
        """Tag the source AMI and its snapshots; the undo restores the tags they had."""
        ec2 = self.session.client("ec2", region)
        with self._step("tag", region):
            image = amis.describe_image(ec2, image_id)
            snapshots = amis.snapshot_ids(image)
            if self.settings.tags:
                before = {image_id: image.get("Tags", [])}
                if snapshots:
                    for snap in ec2.describe_snapshots(SnapshotIds=snapshots)["Snapshots"]:
                        before[snap["SnapshotId"]] = snap.get("Tags", [])
                rollback.push(f"tags of {image_id} in {region}", lambda: self._restore_tags(ec2, before))
                ec2.create_tags(Resources=[image_id, *snapshots], Tags=amis.tag_list(self.settings.tags))
        self._say(f"tagged {image_id} and {len(snapshots)} snapshot(s) in {region}")
        return RegionImage(region=region, image_id=image_id, snapshot_ids=tuple(snapshots))

    def _restore_tags(self, ec2: Any, before: Mapping[str, list[dict[str, str]]]) -> None:
        for resource, tags in before.items():
            old = {t["Key"]: t["Value"] for t in tags}
            added = [{"Key": k} for k in self.settings.tags if k not in old]
            if added:
                ec2.delete_tags(Resources=[resource], Tags=added)
            changed = {k: old[k] for k in self.settings.tags if k in old and old[k] != self.settings.tags[k]}
            if changed:
                ec2.create_tags(Resources=[resource], Tags=amis.tag_list(changed))

    def copy_to_regions(self, source: RegionImage, rollback: Rollback) -> dict[str, RegionImage]:
        """Start every copy at once, wait for all of them, then tag each copy and its snapshots
        (CopyImage's own tagging is not relied on: moto ignores it, and tags must match)."""
        regions = [r for r in dict.fromkeys(self.settings.copy_to) if r != source.region]
        if not regions:
            return {}
        with self._step("copy", source.region):
            described = amis.describe_image(self.session.client("ec2", source.region), source.image_id)
        token = uuid.uuid4().hex
        pending: dict[str, tuple[Any, str]] = {}
        for region in regions:
            ec2 = self.session.client("ec2", region)
            with self._step("copy", region):
                copy_id = ec2.copy_image(**self._copy_args(described, source, region, token))["ImageId"]
            rollback.push(
                f"copy {copy_id} in {region}",
                lambda ec2=ec2, copy_id=copy_id: amis.delete_image(ec2, copy_id),
                journal=("aws-ami", amis.remove_image, self._journal_args(region, copy_id)),
            )
            pending[region] = (ec2, copy_id)
            self._say(f"copying {source.image_id} to {region} as {copy_id}")
        self.step_name = "wait"
        with step("wait", ",".join(regions)):
            done = amis.wait_for_images(
                pending,
                timeout=self.settings.wait_timeout,
                poll_interval=self.settings.poll_interval,
                sleep=self.sleep,
            )
        copies = {}
        for region, image in done.items():
            ec2, copy_id = pending[region]
            snapshots = amis.snapshot_ids(image)
            with self._step("tag", region):
                if self.settings.tags:
                    ec2.create_tags(Resources=[copy_id, *snapshots], Tags=amis.tag_list(self.settings.tags))
            copies[region] = RegionImage(region=region, image_id=copy_id, snapshot_ids=tuple(snapshots))
            self._say(f"{copy_id} available in {region}")
        return copies

    def _copy_args(self, described: Mapping[str, Any], source: RegionImage, region: str, token: str) -> dict:
        args: dict[str, Any] = {
            "SourceImageId": source.image_id,
            "SourceRegion": source.region,
            "Name": described.get("Name") or source.image_id,
            "Description": described.get("Description") or f"{source.image_id} from {source.region}",
            "ClientToken": f"imgpipe-{token}-{region}"[:64],  # a retried CopyImage makes no second copy
        }
        if self.settings.tags:
            tags = amis.tag_list(self.settings.tags)
            args["TagSpecifications"] = [
                {"ResourceType": "image", "Tags": tags},
                {"ResourceType": "snapshot", "Tags": tags},
            ]
        key = self.settings.kms_key_ids.get(region, self.settings.kms_key_id)
        if key:
            args.update(Encrypted=True, KmsKeyId=key)
        return args

    def _journal_args(self, region: str, image_id: str) -> dict[str, Any]:
        return {
            "region": region,
            "image_id": image_id,
            "snapshots": [],
            "profile": self.session.settings.profile,
        }

    def share(self, images: Mapping[str, RegionImage], rollback: Rollback) -> None:
        """Grant launch permission on every AMI and createVolumePermission on its snapshots."""
        principals = list(self.settings.share_with)
        if not principals:
            return
        perms = launch_permissions(principals)
        accounts = [p for p in principals if ACCOUNT.match(p)]
        for region, image in images.items():
            ec2 = self.session.client("ec2", region)
            with self._step("share", region):
                rollback.push(
                    f"launch permissions of {image.image_id} in {region}",
                    lambda ec2=ec2, image=image: self._unshare(ec2, image, perms, accounts),
                )
                _change_permissions(ec2, image, perms, accounts, "add")
            self._say(f"shared {image.image_id} in {region} with {', '.join(principals)}")

    @staticmethod
    def _unshare(ec2: Any, image: RegionImage, perms: list[dict[str, str]], accounts: list[str]) -> None:
        try:
            _change_permissions(ec2, image, perms, accounts, "remove")
        except Exception as exc:
            if not is_not_found(exc):
                raise

    def point_ssm_parameter(self, images: Mapping[str, RegionImage], rollback: Rollback) -> str | None:
        """Set the SSM parameter to the AMI id in each region; the undo restores the old value.
        Returns the data type used: `aws:ec2:image`, or `text` if an endpoint refused it."""
        name = self.settings.ssm_parameter
        if not name:
            return None
        used = set()
        for region, image in images.items():
            ssm = self.session.client("ssm", region)
            with self._step("ssm", region):
                try:
                    old = ssm.get_parameter(Name=name)["Parameter"]
                except Exception as exc:
                    if error_code(exc) != "ParameterNotFound":
                        raise
                    old = None
                rollback.push(
                    f"SSM parameter {name} in {region}", lambda ssm=ssm, old=old: _restore(ssm, name, old)
                )
                used.add(_put_image_id(ssm, name, image.image_id))
            self._say(f"{name} = {image.image_id} in {region}")
        return "text" if "text" in used else "aws:ec2:image"


def _change_permissions(
    ec2: Any, image: RegionImage, perms: list[dict[str, str]], accounts: list[str], operation: str
) -> None:
    """Launch permission on the AMI; for accounts, createVolumePermission on its snapshots."""
    ec2.modify_image_attribute(ImageId=image.image_id, LaunchPermission={operation.capitalize(): perms})
    for snapshot in image.snapshot_ids if accounts else ():
        ec2.modify_snapshot_attribute(
            SnapshotId=snapshot, Attribute="createVolumePermission", OperationType=operation, UserIds=accounts
        )


def _put_image_id(ssm: Any, name: str, image_id: str) -> str:
    """Write with DataType aws:ec2:image (AWS then checks the id is an AMI); fall back to
    text where the endpoint does not know that data type, and say so in the result."""
    try:
        ssm.put_parameter(Name=name, Value=image_id, Type="String", DataType="aws:ec2:image", Overwrite=True)
        return "aws:ec2:image"
    except Exception as exc:
        if error_code(exc) not in {"ValidationException", "UnsupportedParameterType"} or "data" not in (
            error_message(exc).lower()
        ):
            raise
    ssm.put_parameter(Name=name, Value=image_id, Type="String", DataType="text", Overwrite=True)
    return "text"


def _restore(ssm: Any, name: str, old: Mapping[str, Any] | None) -> None:
    if old is None:
        try:
            ssm.delete_parameter(Name=name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
        return
    ssm.put_parameter(
        Name=name, Value=old["Value"], Type=old["Type"], DataType=old.get("DataType", "text"), Overwrite=True
    )
