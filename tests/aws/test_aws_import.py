"""ImageImporter against moto: S3 multipart upload, register_image and publishing run in
moto; import_snapshot, its task polling and cancel_import_task (not in moto) are answered
at the botocore layer of the importer's session, backed by a real snapshot made in moto."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from imgpipe.aws import AwsSession, AwsSettings
from imgpipe.errors import PublishError
from imgpipe.publish import ImageImporter, ImportSettings, PublishSettings
from imgpipe.publish.s3upload import MiB
from tests.aws.conftest import SOURCE_REGION, inject, inventory, plain, tags

BUCKET = "imgpipe-imports"
TASK = "import-snap-0123456789abcdef0"


class ImportStub:
    """What AWS's VM Import would do: read the S3 object, then, after a few polls, produce
    a snapshot. The snapshot is created in moto so cleanup can be checked there."""

    def __init__(
        self, session: AwsSession, outcome: str = "completed", polls: int = 2, interrupt: bool = False
    ):
        self.outcome, self.polls, self.interrupt = outcome, polls, interrupt
        self.request: dict[str, Any] = {}
        self.object: dict[str, Any] = {}
        self.snapshot: str | None = None
        self.cancelled = False
        self.seen_polls = 0
        session.events.register("before-call.ec2.ImportSnapshot", self.start)
        session.events.register("before-call.ec2.DescribeImportSnapshotTasks", self.describe)
        session.events.register("before-call.ec2.CancelImportTask", self.cancel)

    @staticmethod
    def ok(body: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("http://127.0.0.1/", 200, {}, None), body

    def start(self, params: dict[str, Any], **_: Any) -> Any:
        self.request = params["body"]  # EC2 query protocol: flattened parameters
        bucket = self.request["DiskContainer.UserBucket.S3Bucket"]
        key = self.request["DiskContainer.UserBucket.S3Key"]
        self.object = plain("s3").head_object(Bucket=bucket, Key=key)  # the upload is complete
        self.object["Key"] = key
        return self.ok({"ImportTaskId": TASK, "SnapshotTaskDetail": {"Status": "active"}})

    def describe(self, params: dict[str, Any], **_: Any) -> Any:
        assert params["body"]["ImportTaskId.1"] == TASK
        self.seen_polls += 1
        if self.interrupt and self.seen_polls == 2:
            raise KeyboardInterrupt
        detail: dict[str, Any] = {"Status": "active", "Progress": str(30 * self.seen_polls)}
        if self.seen_polls >= self.polls:
            if self.outcome == "completed":
                if self.snapshot is None:
                    ec2 = plain("ec2")
                    volume = ec2.create_volume(Size=8, AvailabilityZone=f"{SOURCE_REGION}a")["VolumeId"]
                    self.snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
                    ec2.delete_volume(VolumeId=volume)
                detail = {"Status": "completed", "SnapshotId": self.snapshot}
            else:
                detail = {"Status": "deleted", "StatusMessage": "ClientError: Disk validation failed"}
        return self.ok({"ImportSnapshotTasks": [{"ImportTaskId": TASK, "SnapshotTaskDetail": detail}]})

    def cancel(self, params: dict[str, Any], **_: Any) -> Any:
        self.cancelled = True
        return self.ok({"ImportTaskId": TASK, "State": "deleting"})


@pytest.fixture
def bucket(moto):
    plain("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def raw_image(tmp_path):
    path = tmp_path / "web.raw"
    with open(path, "wb") as fh:  # 12 MiB: three 5 MiB parts
        for i in range(12):
            fh.write(bytes([i]) * MiB)
    return path


def importer(**kw: Any) -> ImageImporter:
    settings = ImportSettings(bucket=BUCKET, part_size_mib=5, poll_interval=0, max_concurrency=2)
    return ImageImporter(AwsSession(AwsSettings(region=SOURCE_REGION)), settings, sleep=lambda s: None, **kw)


def assert_bucket_empty():
    s3 = plain("s3")
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def assert_nothing_left():
    assert_bucket_empty()
    assert all(images == set() and snaps == set() for images, snaps in inventory().values()), inventory()


def test_import_uploads_imports_registers_publishes_and_removes_upload(bucket, raw_image):
    progress = []
    imp = importer(progress=lambda sent, total: progress.append((sent, total)))
    stub = ImportStub(imp.session)
    registered = []
    imp.session.events.register(
        "before-parameter-build.ec2.RegisterImage", lambda params, **_: registered.append(dict(params))
    )
    publish = PublishSettings(tags={"team": "web"}, copy_to=["eu-west-1"], poll_interval=0)
    result = imp.import_image(raw_image, "web-42", publish=publish)

    assert stub.object["ContentLength"] == 12 * MiB
    assert stub.object["ETag"].strip('"').endswith("-3")  # a multipart upload of 3 parts
    assert stub.request["DiskContainer.Format"] == "RAW"
    assert progress[-1] == (12 * MiB, 12 * MiB)
    assert_bucket_empty()
    # register_image's arguments: moto ignores them, so they are read from the wire
    (reg,) = registered
    assert reg["RootDeviceName"] == "/dev/xvda" and reg["EnaSupport"] is True
    assert (reg["BootMode"], reg["Architecture"], reg["VirtualizationType"]) == (
        "legacy-bios",
        "x86_64",
        "hvm",
    )
    assert reg["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == stub.snapshot
    # moto's state: the AMI in both regions, tagged, the imported snapshot tagged
    assert [i.region for i in result.images] == ["us-east-1", "eu-west-1"]
    for image in result.images:
        ec2 = plain("ec2", image.region)
        assert ec2.describe_images(ImageIds=[image.image_id])["Images"][0]["Name"] == "web-42"
        assert tags(ec2, image.image_id) == {"team": "web"}
    assert tags(plain("ec2"), stub.snapshot) == {"team": "web"}


def test_qcow2_is_converted_to_vmdk(bucket, tmp_path):
    path = tmp_path / "web.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    imp = importer()
    stub = ImportStub(imp.session)
    imp.import_image(path, "web-qcow2")
    assert stub.request["DiskContainer.Format"] == "VMDK"
    assert stub.object["Key"].endswith(".vmdk") and stub.object["ContentLength"] > 0
    assert not list(tmp_path.glob("imgpipe-import-*"))  # the converted copy is gone
    assert_bucket_empty()


def test_failed_import_task_removes_upload(bucket, raw_image):
    imp = importer()
    ImportStub(imp.session, outcome="deleted")
    with pytest.raises(PublishError) as err:
        imp.import_image(raw_image, "web-42")
    assert (err.value.step, err.value.code) == ("import", "ImportFailed")
    assert "Disk validation failed" in str(err.value)
    assert_nothing_left()


def test_failed_register_deletes_imported_snapshot(bucket, raw_image):
    imp = importer()
    stub = ImportStub(imp.session)
    inject(imp.session, "ec2", "RegisterImage")
    with pytest.raises(PublishError) as err:
        imp.import_image(raw_image, "web-42")
    assert (err.value.step, err.value.region, err.value.code) == (
        "register",
        "us-east-1",
        "UnauthorizedOperation",
    )
    assert stub.snapshot is not None
    assert_nothing_left()


def test_failed_publish_removes_the_imported_ami(bucket, raw_image):
    imp = importer()
    ImportStub(imp.session)
    inject(imp.session, "ec2", "CopyImage", region="eu-west-1")
    with pytest.raises(PublishError) as err:
        imp.import_image(raw_image, "web-42", publish=PublishSettings(copy_to=["eu-west-1"], poll_interval=0))
    assert (err.value.step, err.value.region) == ("copy", "eu-west-1")
    assert_nothing_left()


def test_failed_upload_leaves_no_parts(bucket, raw_image):
    imp = importer()
    stub = ImportStub(imp.session)
    inject(imp.session, "s3", "UploadPart", nth=2, code="AccessDenied")
    with pytest.raises(PublishError) as err:
        imp.import_image(raw_image, "web-42")
    assert err.value.step == "upload"
    assert stub.request == {}  # never got to the import
    assert_nothing_left()


def test_interrupt_during_upload_leaves_no_parts(bucket, raw_image):
    """A real SIGINT, delivered while the main thread waits for the part uploads."""
    sent = []

    def progress(done, total):
        if not sent:
            os.kill(os.getpid(), signal.SIGINT)
        sent.append(done)

    imp = importer(progress=progress)
    ImportStub(imp.session)
    with pytest.raises(KeyboardInterrupt):
        imp.import_image(raw_image, "web-42")
    assert sent
    assert_nothing_left()


def test_interrupt_while_importing_cancels_task_and_removes_upload(bucket, raw_image):
    imp = importer()
    stub = ImportStub(imp.session, polls=5, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        imp.import_image(raw_image, "web-42")
    assert stub.cancelled
    assert_nothing_left()
