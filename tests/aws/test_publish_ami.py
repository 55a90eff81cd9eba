"""AmiPublisher against a moto server: the happy path, faults at every step, interrupts
and throttling. Every assertion reads moto's state back with describe_* calls."""

from __future__ import annotations

import pytest

from imgpipe.aws import AwsSession, AwsSettings, RetryMode, RetrySettings
from imgpipe.errors import PublishError
from imgpipe.publish import AmiPublisher, PublishSettings
from tests.aws.conftest import SOURCE_REGION, inject, inventory, plain, seed_ami, tags, throttle

ACCOUNT = "111122223333"
ORG = "arn:aws:organizations::123456789012:organization/o-abc123def4"
SETTINGS = PublishSettings(
    copy_to=["eu-west-1", "us-west-2"],
    share_with=[ACCOUNT, ORG],
    tags={"team": "web", "imgpipe:build": "b-42"},
    ssm_parameter="/images/web/latest",
    poll_interval=0,
    wait_timeout=30,
)


def publisher(settings: PublishSettings = SETTINGS, **aws: object) -> AmiPublisher:
    return AmiPublisher(AwsSession(AwsSettings(region=SOURCE_REGION, **aws)), settings)  # type: ignore[arg-type]


def test_publish_tags_copies_shares_and_points_ssm(moto):
    source, source_snaps = seed_ami()
    result = publisher().publish(source)

    assert [i.region for i in result.images] == ["us-east-1", "eu-west-1", "us-west-2"]
    assert result.artifact_ids[0] == f"us-east-1:{source}"
    assert result.artifact_id == ",".join(f"{i.region}:{i.image_id}" for i in result.images)
    assert result.ssm_data_type == "aws:ec2:image"
    for image in result.images:
        ec2 = plain("ec2", image.region)
        described = ec2.describe_images(ImageIds=[image.image_id])["Images"][0]
        assert described["State"] == "available"
        assert described["Name"] == "web-1"
        snaps = [b["Ebs"]["SnapshotId"] for b in described["BlockDeviceMappings"]]
        assert list(image.snapshot_ids) == snaps and snaps
        for resource in [image.image_id, *snaps]:
            assert tags(ec2, resource) == {"team": "web", "imgpipe:build": "b-42"}, resource
        perms = ec2.describe_image_attribute(ImageId=image.image_id, Attribute="launchPermission")
        assert {"UserId": ACCOUNT} in perms["LaunchPermissions"]
        assert {"OrganizationArn": ORG} in perms["LaunchPermissions"]
        for snap in snaps:
            cvp = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
            assert {"UserId": ACCOUNT} in cvp["CreateVolumePermissions"]
        param = plain("ssm", image.region).get_parameter(Name="/images/web/latest")["Parameter"]
        assert param["Value"] == image.image_id
        assert param["DataType"] == "aws:ec2:image"
    assert result.images[0].snapshot_ids == tuple(source_snaps)
    # exactly one copy per region, nothing else
    state = inventory()
    assert state["us-east-1"][0] == {source}
    assert all(len(state[r][0]) == 1 for r in ("eu-west-1", "us-west-2"))


def test_no_copy_no_share_only_tags(moto):
    source, snaps = seed_ami()
    result = publisher(PublishSettings(tags={"a": "b"})).publish(source)
    assert result.artifact_ids == [f"us-east-1:{source}"]
    assert result.ssm_parameter is None
    ec2 = plain("ec2")
    assert tags(ec2, source) == {"a": "b"} == tags(ec2, snaps[0])


def test_kms_key_is_sent_with_each_copy(moto):
    """moto ignores KmsKeyId/Encrypted, so this reads the wire: what botocore sent."""
    source, _ = seed_ami()
    pub = publisher(
        SETTINGS.model_copy(update={"kms_key_id": "alias/images", "kms_key_ids": {"us-west-2": "k-2"}})
    )
    sent = []
    pub.session.events.register(
        "before-parameter-build.ec2.CopyImage", lambda params, **_: sent.append(params) and None
    )
    pub.publish(source)
    assert {(p["Encrypted"], p["KmsKeyId"]) for p in sent} == {(True, "alias/images"), (True, "k-2")}
    assert all(p["ClientToken"].startswith("imgpipe-") for p in sent)


def assert_rolled_back(before, source):
    after = inventory()
    assert after == before, "publish left images or snapshots behind"
    ec2 = plain("ec2")
    assert tags(ec2, source) == {"keep": "me"}
    perms = ec2.describe_image_attribute(ImageId=source, Attribute="launchPermission")["LaunchPermissions"]
    assert perms == []


def seed_for_fault():
    source, snaps = seed_ami()
    plain("ec2").create_tags(Resources=[source], Tags=[{"Key": "keep", "Value": "me"}])
    # an older value of the SSM pointer in one region must come back after a rollback
    plain("ssm", "eu-west-1").put_parameter(Name="/images/web/latest", Value="ami-00000001", Type="String")
    return source, inventory()


def assert_ssm_restored():
    assert (
        plain("ssm", "eu-west-1").get_parameter(Name="/images/web/latest")["Parameter"]["Value"]
        == "ami-00000001"
    )
    for region in ("us-east-1", "us-west-2"):
        with pytest.raises(Exception, match="ParameterNotFound"):
            plain("ssm", region).get_parameter(Name="/images/web/latest")


@pytest.mark.parametrize(
    ("service", "operation", "region", "step"),
    [
        ("ec2", "CopyImage", "us-west-2", "copy"),
        ("ec2", "DescribeImages", "eu-west-1", "wait"),
        ("ec2", "ModifyImageAttribute", "us-west-2", "share"),
        ("ec2", "ModifySnapshotAttribute", "us-east-1", "share"),
        ("ssm", "PutParameter", "us-west-2", "ssm"),
    ],
)
def test_failure_at_each_step_rolls_back_everything(moto, service, operation, region, step):
    source, before = seed_for_fault()
    pub = publisher()
    inject(pub.session, service, operation, region=region)
    with pytest.raises(PublishError) as err:
        pub.publish(source)
    assert (err.value.step, err.value.region, err.value.code) == (step, region, "UnauthorizedOperation")
    assert "UnauthorizedOperation" in str(err.value) and "hint: " in str(err.value)
    assert_rolled_back(before, source)
    assert_ssm_restored()


@pytest.mark.parametrize(("operation", "nth"), [("CopyImage", 2), ("DescribeImages", 3)])
def test_interrupt_mid_copy_rolls_back_then_propagates(moto, operation, nth):
    """Ctrl-C while the second copy is being started, or while waiting for the copies."""
    source, before = seed_for_fault()
    pub = publisher()
    seen = inject(pub.session, "ec2", operation, nth=nth, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        pub.publish(source)
    assert seen() >= nth
    assert_rolled_back(before, source)


def test_wait_timeout_rolls_back(moto, monkeypatch):
    """moto makes copies available at once; pretend they stay pending to hit the deadline."""
    source, before = seed_for_fault()
    pub = publisher(SETTINGS.model_copy(update={"wait_timeout": 0.01}))

    def pending(parsed, **_):
        for image in parsed.get("Images", []):
            if image["ImageId"] != source:
                image["State"] = "pending"

    pub.session.events.register("after-call.ec2.DescribeImages", pending)
    pub.sleep = lambda s: None
    with pytest.raises(PublishError) as err:
        pub.publish(source)
    assert (err.value.step, err.value.code) == ("wait", "Timeout")
    assert_rolled_back(before, source)


def test_failed_rollback_is_reported_not_hidden(moto):
    source, _ = seed_for_fault()
    pub = publisher()
    inject(pub.session, "ssm", "PutParameter", region="us-west-2")
    inject(pub.session, "ec2", "DeregisterImage", region="eu-west-1", code="InternalError", status=400)
    with pytest.raises(PublishError) as err:
        pub.publish(source)
    assert err.value.step == "ssm"
    assert "rollback could not undo" in str(err.value) and "eu-west-1" in str(err.value)


def test_ssm_degrades_to_text_when_data_type_refused(moto):
    source, _ = seed_for_fault()
    pub = publisher()

    def refuse(request, **_):
        if b"aws:ec2:image" in request.body:
            from tests.aws.conftest import error_response

            return error_response(
                request, 400, "ValidationException", "The data type aws:ec2:image is not valid"
            )
        return None

    pub.session.events.register("before-send.ssm.PutParameter", refuse)
    result = pub.publish(source)
    assert result.ssm_data_type == "text"
    for image in result.images:
        param = plain("ssm", image.region).get_parameter(Name="/images/web/latest")["Parameter"]
        assert (param["Value"], param["DataType"]) == (image.image_id, "text")


@pytest.mark.parametrize("mode", list(RetryMode))
def test_publish_survives_30_percent_throttling(moto, monkeypatch, mode):
    from botocore.retries.bucket import TokenBucket
    from botocore.retries.standard import ExponentialBackoff

    # the backoff sleeps, and adaptive mode's client-side rate limiter, are what make a
    # throttled run slow; the retry decisions themselves are left as they are
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    monkeypatch.setattr(TokenBucket, "acquire", lambda self, amount=1, block=True: True)
    source, _ = seed_ami()
    pub = publisher(retry=RetrySettings(mode=mode, max_attempts=12))
    throttled_ec2 = throttle(pub.session, "ec2", 0.3)
    throttled_ssm = throttle(pub.session, "ssm", 0.3, seed=11)
    result = pub.publish(source)
    assert throttled_ec2() >= 5 and throttled_ssm() >= 1
    state = inventory()
    for image in result.images:
        assert state[image.region][0] == {image.image_id}  # one copy each: ClientToken, no duplicates
        assert plain("ssm", image.region).get_parameter(Name="/images/web/latest")["Parameter"]["Value"] == (
            image.image_id
        )
        assert tags(plain("ec2", image.region), image.snapshot_ids[0])["team"] == "web"


def test_journal_taken_mid_publish_lets_gc_remove_the_copies(moto, tmp_path):
    """What a kill -9 during the wait would leave: the journal names every copy, and its
    cleaners (what `imgpipe gc` runs) remove them with their snapshots."""
    import json

    from imgpipe.journal import Resources, clean_record

    source, source_snaps = seed_ami()
    resources = Resources(tmp_path, "b-1", "aws")
    pub = AmiPublisher(AwsSession(AwsSettings(region=SOURCE_REGION)), SETTINGS, resources=resources)
    records = []

    def snapshot_journal(**_):
        if resources.path.exists():
            records.append(json.loads(resources.path.read_text()))

    pub.session.events.register("after-call.ec2.DescribeImages", snapshot_journal)
    result = pub.publish(source)
    assert json.loads(resources.path.read_text())["resources"] == []  # published copies are handed over
    mid = records[-1]
    assert [(r["kind"], r["args"]["region"]) for r in mid["resources"]] == [
        ("aws-ami", "eu-west-1"),
        ("aws-ami", "us-west-2"),
    ]
    assert clean_record(mid) == []
    state = inventory()
    assert state["eu-west-1"] == state["us-west-2"] == (set(), set())
    assert state["us-east-1"] == ({source}, set(source_snaps))
    assert len(result.images) == 3
