"""Publishing models and the rollback stack, with fakes (the moto tier is tests/aws)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imgpipe.aws.errors import fail_after_rollback, step
from imgpipe.core import Rollback
from imgpipe.errors import PublishError
from imgpipe.publish import PublishResult, PublishSettings, RegionImage
from imgpipe.publish.ami import launch_permissions
from imgpipe.publish.aws_import import DiskFormat, detect_format

ORG = "arn:aws:organizations::123456789012:organization/o-abc123def4"
OU = "arn:aws:organizations::123456789012:ou/o-abc123def4/ou-ab12-cd34ef56"


def test_share_with_accepts_accounts_orgs_and_ous_only():
    settings = PublishSettings(share_with=["123456789012", ORG, OU])
    assert launch_permissions(settings.share_with) == [
        {"UserId": "123456789012"},
        {"OrganizationArn": ORG},
        {"OrganizationalUnitArn": OU},
    ]
    with pytest.raises(ValidationError, match="12345"):
        PublishSettings(share_with=["12345"])


def test_result_uses_packers_artifact_id_form():
    result = PublishResult(
        images=(
            RegionImage(region="us-east-1", image_id="ami-1", snapshot_ids=("snap-1",)),
            RegionImage(region="eu-west-1", image_id="ami-2", snapshot_ids=("snap-2",)),
        )
    )
    assert result.artifact_ids == ["us-east-1:ami-1", "eu-west-1:ami-2"]
    assert result.artifact_id == "us-east-1:ami-1,eu-west-1:ami-2"
    assert result.model_dump()["images"][1]["snapshot_ids"] == ("snap-2",)


def test_rollback_runs_newest_first_and_goes_on_past_failures():
    done = []
    rollback = Rollback()
    rollback.push("first", lambda: done.append("first"))

    def broken():
        raise KeyboardInterrupt  # a second Ctrl-C during rollback must not stop it

    rollback.push("second", broken)
    rollback.push("third", lambda: done.append("third"))
    failures = rollback.run()
    assert done == ["third", "first"]
    assert failures == ["second: KeyboardInterrupt: "]
    assert rollback.run() == []


def test_rollback_journals_and_releases(tmp_path):
    from imgpipe.aws.images import remove_image
    from imgpipe.journal import Resources

    resources = Resources(tmp_path, "b1", "aws")
    rollback = Rollback(resources)
    rollback.push(
        "copy", lambda: None, journal=("aws-ami", remove_image, {"region": "r", "image_id": "ami-1"})
    )
    assert "ami-1" in resources.path.read_text()
    rollback.commit()
    assert "ami-1" not in resources.path.read_text()


def test_step_names_step_region_and_code():
    class Throttled(Exception):
        response = {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}

    with pytest.raises(PublishError) as err, step("copy", "eu-west-1"):
        raise Throttled
    assert (err.value.step, err.value.region, err.value.code) == ("copy", "eu-west-1", "RequestLimitExceeded")
    assert "slow down" in str(err.value) and "retry.max_attempts" in str(err.value)


def test_failed_undo_is_appended_to_the_error():
    exc = PublishError("copy failed", step="copy")
    raised = fail_after_rollback(exc, ["copy ami-2 in eu-west-1: InternalError: boom"], "copy")
    assert raised is exc and "rollback could not undo" in str(raised) and "ami-2" in str(raised)
    interrupt = fail_after_rollback(KeyboardInterrupt(), ["x"], "wait")
    assert isinstance(interrupt, KeyboardInterrupt) and interrupt.__notes__


def test_detect_format(tmp_path):
    (tmp_path / "a").write_bytes(b"QFI\xfb" + bytes(60))
    (tmp_path / "b").write_bytes(b"KDMV" + bytes(60))
    (tmp_path / "c").write_bytes(bytes(64))
    assert [detect_format(tmp_path / n) for n in "abc"] == [DiskFormat.QCOW2, DiskFormat.VMDK, DiskFormat.RAW]
