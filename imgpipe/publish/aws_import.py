"""Turn a local disk image into an AMI: upload it to S3, import it as an EBS snapshot,
register an AMI on it (and, with `import_image`, publish that AMI: tag, copy, share, SSM)
all or nothing.
The S3 object is removed afterwards whatever happened. The object, the import task, the
snapshot and the AMI all carry the publish tags (a bake adds its build tags there, which
`imgpipe gc --aws-region` finds them by); the object and the task are journaled too.

import_snapshot and its task polling go through `_start_import` / `_import_status`, plain
calls on the session's EC2 client: tests answer them at the botocore layer (the session's
event hooks), because moto does not implement them."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.aws import images as amis
from imgpipe.aws import importtasks
from imgpipe.aws.distribution import PublishSettings
from imgpipe.aws.errors import AwsWaitError, error_code, step
from imgpipe.aws.job import AwsJob
from imgpipe.core.artifact import RegionImage
from imgpipe.core.undo import Rollback
from imgpipe.errors import run_command
from imgpipe.publish.ami import AmiPublisher, PublishResult
from imgpipe.publish.s3upload import MiB, Progress, delete_upload, remove_upload, upload_file

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources


class DiskFormat(StrEnum):
    RAW = "raw"
    QCOW2 = "qcow2"
    VMDK = "vmdk"


class BootMode(StrEnum):
    LEGACY_BIOS = "legacy-bios"
    UEFI = "uefi"
    UEFI_PREFERRED = "uefi-preferred"


class Architecture(StrEnum):
    X86_64 = "x86_64"
    ARM64 = "arm64"


class ImportSettings(BaseModel):
    """How a local image becomes an AMI (the `aws-import` publisher)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str = Field(
        description="S3 bucket the image is uploaded to for the import (in the import region)"
    )
    key_prefix: str = Field("imgpipe-import/", description="Key prefix of the temporary S3 object")
    architecture: Architecture = Field(Architecture.X86_64, description="CPU architecture of the image")
    boot_mode: BootMode = Field(BootMode.LEGACY_BIOS, description="Firmware the AMI boots with")
    root_device: str = Field("/dev/xvda", description="Root device name of the AMI")
    ena_support: bool = Field(True, description="Mark the AMI as supporting ENA networking")
    volume_type: str = Field("gp3", description="EBS volume type of the root volume")
    role_name: str | None = Field(None, description="IAM service role for VM Import; AWS default: vmimport")
    kms_key_id: str | None = Field(None, description="KMS key to encrypt the imported snapshot with")
    import_timeout: float = Field(7200.0, gt=0, description="Seconds to wait for the snapshot import")
    poll_interval: float = Field(15.0, ge=0, description="Seconds between import/AMI state polls")
    part_size_mib: int = Field(64, ge=5, le=5120, description="Multipart upload part size in MiB")
    max_concurrency: int = Field(4, ge=1, le=64, description="Parts uploaded at the same time")


IMPORT_FORMATS = {DiskFormat.RAW: "RAW", DiskFormat.VMDK: "VMDK"}  # import_snapshot takes no qcow2


def detect_format(path: Path) -> DiskFormat:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"QFI\xfb":
        return DiskFormat.QCOW2
    if magic == b"KDMV":
        return DiskFormat.VMDK
    return DiskFormat.RAW


class ImageImporter(AwsJob):
    """Imports a local image file as an AMI and publishes it (see module docstring)."""

    settings: ImportSettings

    def __init__(
        self,
        session: AwsSession,
        settings: ImportSettings,
        *,
        emit: Emitter | None = None,
        resources: Resources | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(session, settings, emit=emit, resources=resources, sleep=sleep, cancel=cancel)
        self.progress = progress

    def import_image(
        self,
        path: Path,
        name: str,
        *,
        description: str = "",
        region: str | None = None,
        publish: PublishSettings | None = None,
        rollback: Rollback | None = None,
    ) -> PublishResult:
        """Import `path` as AMI `name` (see import_to_ami), then publish it with `publish`
        (tags, copies, shares, SSM). On failure or interrupt everything made is removed;
        PublishError names the step, region and AWS error code. `rollback`: as
        AmiPublisher.publish's."""
        publish = publish or PublishSettings()
        own = rollback is None
        rollback = rollback or Rollback(self.resources)
        image = self.import_to_ami(
            path, name, description=description, region=region, tags=publish.tags, rollback=rollback
        )
        result = AmiPublisher(
            self.session,
            publish,
            emit=self.emit,
            resources=self.resources,
            sleep=self.sleep,
            cancel=self.cancel,
        ).publish(image.image_id, image.region, rollback)
        if own:
            rollback.commit()
        return result

    def import_to_ami(
        self,
        path: Path,
        name: str,
        *,
        description: str = "",
        region: str | None = None,
        tags: Mapping[str, str] | None = None,
        rollback: Rollback | None = None,
    ) -> RegionImage:
        """Upload `path` (qcow2 is converted to stream-optimized VMDK first), import it as
        a snapshot and register AMI `name` on it, all tagged `tags`. On failure or
        interrupt the import, snapshot and AMI are removed; with `rollback` (the target's
        undo stack) the undos stay there for the caller to commit."""
        region = region or self.session.region
        tags = tags or {}
        own = rollback is None
        rollback = rollback or Rollback(self.resources)
        try:
            with tempfile.TemporaryDirectory(prefix="imgpipe-import-", dir=path.parent) as tmp:
                disk, fmt = self.prepare_disk(path, Path(tmp))
                key = f"{self.settings.key_prefix}{name}-{uuid.uuid4().hex[:12]}.{fmt.value}"
                snapshot = self._upload_and_import(disk, fmt, key, name, region, tags, rollback)
            image_id = self.register(snapshot, name, description, region, rollback, tags)
        except BaseException as exc:
            self._roll_back_and_raise(exc, rollback, f"import of {path.name}")
        if own:
            rollback.commit()
        return RegionImage(region=region, image_id=image_id, snapshot_ids=(snapshot,))

    def prepare_disk(self, path: Path, tmp: Path) -> tuple[Path, DiskFormat]:
        """A file import_snapshot accepts: raw and VMDK as they are, qcow2 converted."""
        fmt = detect_format(path)
        if fmt is not DiskFormat.QCOW2:
            return path, fmt
        out = tmp / f"{path.stem}.vmdk"
        self.step_name = "convert"
        run_command(
            ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(path), str(out)],
            cancel=self.cancel,
        )
        return out, DiskFormat.VMDK

    def _upload_and_import(
        self,
        disk: Path,
        fmt: DiskFormat,
        key: str,
        name: str,
        region: str,
        tags: Mapping[str, str],
        rollback: Rollback,
    ) -> str:
        bucket = self.settings.bucket
        s3 = self.session.client("s3", region)
        journal_id = None
        if self.resources is not None:
            args = {"region": region, "bucket": bucket, "key": key, "profile": self.session.settings.profile}
            journal_id = self.resources.track("aws-s3-object", remove_upload, **args)
        try:
            with self._step("upload", region):
                self._say(f"uploading {disk.name} to s3://{bucket}/{key}")
                upload_file(
                    s3,
                    disk,
                    bucket,
                    key,
                    part_size=self.settings.part_size_mib * MiB,
                    max_concurrency=self.settings.max_concurrency,
                    progress=self.progress,
                    cancel=self.cancel,
                    tags=tags,
                )
            return self.import_snapshot(bucket, key, fmt, name, region, tags, rollback)
        finally:
            self._remove_upload(s3, bucket, key, journal_id)

    def _remove_upload(self, s3: Any, bucket: str, key: str, journal_id: int | None) -> None:
        try:
            delete_upload(s3, bucket, key)
        except Exception as exc:  # noqa: BLE001 - left in the journal for `imgpipe gc`
            self._say(f"could not remove s3://{bucket}/{key} ({error_code(exc)}); `imgpipe gc` will retry")
            return
        if journal_id is not None and self.resources is not None:
            self.resources.release(journal_id)

    def import_snapshot(
        self,
        bucket: str,
        key: str,
        fmt: DiskFormat,
        name: str,
        region: str,
        tags: Mapping[str, str],
        rollback: Rollback,
    ) -> str:
        """Import s3://bucket/key as an EBS snapshot, wait for it, tag it; return its id."""
        ec2 = self.session.client("ec2", region)
        with self._step("import", region):
            task_id = self._start_import(ec2, bucket, key, fmt, name, tags)
            # Journaled the moment its id is known: the import goes on in AWS after a kill -9
            # (and the task's tags let `gc --aws-region` find it without the journal).
            rollback.push(
                f"import task {task_id} in {region}",
                lambda: importtasks.remove_import_task(ec2, task_id),
                journal=(
                    "aws-import-task",
                    importtasks.remove_import,
                    self._journal_args(region, task_id=task_id),
                ),
            )
            self._say(f"importing snapshot ({task_id})")
            snapshot = self._wait_for_import(ec2, task_id, region)
            rollback.push(
                f"snapshot {snapshot} in {region}",
                lambda: amis.delete_snapshots(ec2, [snapshot]),
                journal=(
                    "aws-snapshot",
                    amis.remove_snapshot,
                    self._journal_args(region, snapshot_id=snapshot),
                ),
            )
            if tags:
                ec2.create_tags(Resources=[snapshot], Tags=amis.tag_list(tags))
        return snapshot

    def _start_import(
        self, ec2: Any, bucket: str, key: str, fmt: DiskFormat, name: str, tags: Mapping[str, str]
    ) -> str:
        args: dict[str, Any] = {
            "Description": f"imgpipe import of {name}",
            "DiskContainer": {
                "Description": name,
                "Format": IMPORT_FORMATS[fmt],
                "UserBucket": {"S3Bucket": bucket, "S3Key": key},
            },
            "ClientToken": f"imgpipe-{uuid.uuid4().hex}",
        }
        if self.settings.role_name:
            args["RoleName"] = self.settings.role_name
        if self.settings.kms_key_id:
            args.update(Encrypted=True, KmsKeyId=self.settings.kms_key_id)
        if tags:
            args["TagSpecifications"] = [
                {"ResourceType": "import-snapshot-task", "Tags": amis.tag_list(tags)}
            ]
        return str(ec2.import_snapshot(**args)["ImportTaskId"])

    def _import_status(self, ec2: Any, task_id: str) -> dict[str, Any]:
        tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"]
        return tasks[0]["SnapshotTaskDetail"]  # type: ignore[no-any-return]

    def _wait_for_import(self, ec2: Any, task_id: str, region: str) -> str:
        deadline = time.monotonic() + self.settings.import_timeout
        while True:
            detail = self._import_status(ec2, task_id)
            status = detail.get("Status", "active")
            if status == "completed":
                return str(detail["SnapshotId"])
            if status in {"deleting", "deleted", "cancelled", "error"}:
                raise AwsWaitError(
                    f"import task {task_id} {status}: {detail.get('StatusMessage', 'no message')}",
                    "ImportFailed",
                )
            if time.monotonic() >= deadline:
                raise AwsWaitError(
                    f"import task {task_id} not done after {self.settings.import_timeout:g} s", "Timeout"
                )
            self._say(f"import {task_id}: {status} {detail.get('Progress', '')}%".rstrip("%"))
            self.sleep(self.settings.poll_interval)

    def register(
        self,
        snapshot: str,
        name: str,
        description: str,
        region: str,
        rollback: Rollback,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Register an HVM AMI booting from `snapshot`, tagged `tags` as it is made, and wait
        until it is available. Its undo goes by the id RegisterImage returns, never by name:
        another build's published image may have the same name."""
        ec2 = self.session.client("ec2", region)
        s = self.settings
        tagging = (
            {"TagSpecifications": [{"ResourceType": "image", "Tags": amis.tag_list(tags)}]} if tags else {}
        )
        with self._step("register", region):
            image_id = ec2.register_image(
                Name=name,
                Description=description or name,
                Architecture=s.architecture.value,
                RootDeviceName=s.root_device,
                BlockDeviceMappings=[
                    {
                        "DeviceName": s.root_device,
                        "Ebs": {
                            "SnapshotId": snapshot,
                            "DeleteOnTermination": True,
                            "VolumeType": s.volume_type,
                        },
                    }
                ],
                VirtualizationType="hvm",
                EnaSupport=s.ena_support,
                BootMode=s.boot_mode.value,
                **tagging,
            )["ImageId"]
            rollback.push(
                f"image {image_id} in {region}",
                lambda: amis.delete_image(ec2, image_id, [snapshot]),
                journal=(
                    "aws-ami",
                    amis.remove_image,
                    self._journal_args(region, image_id=image_id, snapshots=[snapshot]),
                ),
            )
        self.step_name = "wait"
        with step("wait", region):
            amis.wait_for_images(
                {region: (ec2, image_id)},
                timeout=self.settings.import_timeout,
                poll_interval=self.settings.poll_interval,
                sleep=self.sleep,
            )
        self._say(f"registered {image_id} in {region}")
        return str(image_id)

    def _journal_args(self, region: str, **args: Any) -> dict[str, Any]:
        return {"region": region, **args, "profile": self.session.settings.profile}
