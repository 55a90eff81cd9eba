"""`publish: {publisher: aws-import}` through the real pipeline: a target's captured
image becomes an AMI in moto (copied, tagged), recorded in the manifest as
region:ami-id; a failed publish fails the target and leaves nothing anywhere."""

from __future__ import annotations

import json

import pytest

from imgpipe.events import NullSink
from imgpipe.pipeline import BakeOptions, bake
from imgpipe.publish.aws_import_publisher import AwsImportPublisher
from imgpipe.spec import load_spec
from tests.aws.conftest import SOURCE_REGION, inject, inventory, plain, tags
from tests.aws.test_aws_import import BUCKET, ImportStub
from tests.conftest import write
from tests.unit.test_pipeline_fake import fake, leftovers  # noqa: F401 - fake is a fixture

pytestmark = pytest.mark.usefixtures("fake")  # FakeBuilder in place of a VM builder

SPEC = f"""\
imgpipe: 1
name: demo
seal: {{enabled: false}}
targets:
  local: {{builder: fake}}
publish:
  ami:
    publisher: aws-import
    from: local
    aws: {{region: {SOURCE_REGION}}}
    import: {{bucket: {BUCKET}, poll_interval: 0, part_size_mib: 5}}
    publish: {{copy_to: [eu-west-1], tags: {{team: web}}}}
"""


@pytest.fixture
def fake_pipeline(monkeypatch, tmp_path, moto):
    plain("s3").create_bucket(Bucket=BUCKET)
    sessions = []
    real = AwsImportPublisher.make_session

    def session_with_import_stub(self):  # moto lacks import_snapshot: answer it at botocore's layer
        session = real(self)
        sessions.append((session, ImportStub(session)))
        return session

    monkeypatch.setattr(AwsImportPublisher, "make_session", session_with_import_stub)
    return tmp_path, sessions


def run(tmp_path):
    loaded = load_spec(write(tmp_path / "spec.yml", SPEC))
    return bake(loaded, BakeOptions(tmp_path / "out", ("local",), {}), NullSink())


def test_local_image_becomes_tagged_amis_in_two_regions(fake_pipeline, isolated_state):
    tmp_path, _ = fake_pipeline
    result = run(tmp_path)
    assert result.ok, result.errors
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    local, ami = manifest["builds"]
    assert local["artifact_id"] == "demo-local.qcow2"
    assert ami["name"] == "local:ami" and ami["builder_type"] == "imgpipe.aws-import"
    regions = dict(part.split(":") for part in ami["artifact_id"].split(","))
    assert set(regions) == {SOURCE_REGION, "eu-west-1"}
    for region, image_id in regions.items():
        found = tags(plain("ec2", region), image_id)
        assert found["team"] == "web" and found["imgpipe:build-id"] == result.build_id
        assert found["imgpipe:state"] == "published"  # `building` until the target succeeded
    assert plain("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert (result.output_dir / "demo-local.qcow2").is_file()
    assert leftovers(tmp_path, isolated_state)["journal"] == []


def test_failed_publish_fails_target_and_leaves_nothing(fake_pipeline, isolated_state, monkeypatch):
    tmp_path, sessions = fake_pipeline
    real = AwsImportPublisher.make_session

    def failing_copy(self):
        session = real(self)
        inject(session, "ec2", "CopyImage", code="InvalidRegion", status=400)
        return session

    monkeypatch.setattr(AwsImportPublisher, "make_session", failing_copy)
    result = run(tmp_path)
    assert set(result.errors) == {"local"}
    assert "copy" in str(result.errors["local"]) and "InvalidRegion" in str(result.errors["local"])
    assert not (result.output_dir / "demo-local.qcow2").exists()
    assert all(images == set() and snaps == set() for images, snaps in inventory().values()), inventory()
    assert plain("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert leftovers(tmp_path, isolated_state) == {"vms": [], "partials": [], "workdirs": [], "journal": []}
    assert json.loads((result.output_dir / "manifest.json").read_text())["builds"] == []


def test_an_ami_publisher_takes_the_imported_ami(fake_pipeline, isolated_state):
    """`publisher: ami` from the aws-import entry: the AMI that an import made is copied,
    shared and pointed at the same way as the EC2 builder's."""
    tmp_path, _ = fake_pipeline
    spec = SPEC.replace("    publish: {copy_to: [eu-west-1], tags: {team: web}}\n", "") + (
        "  copies:\n"
        "    publisher: ami\n"
        "    from: ami\n"
        f"    aws: {{region: {SOURCE_REGION}}}\n"
        "    copy_to: [us-west-2]\n"
        "    ssm_parameter: /images/demo/latest\n"
    )
    loaded = load_spec(write(tmp_path / "spec.yml", spec))
    result = bake(loaded, BakeOptions(tmp_path / "out", ("local",), {}), NullSink())
    assert result.ok, result.errors
    builds = {b["name"]: b for b in json.loads((result.output_dir / "manifest.json").read_text())["builds"]}
    (imported,) = [part.split(":") for part in builds["local:ami"]["artifact_id"].split(",")]
    copies = dict(part.split(":") for part in builds["local:copies"]["artifact_id"].split(","))
    assert imported[0] == SOURCE_REGION and copies[SOURCE_REGION] == imported[1]
    assert builds["local:copies"]["custom_data"]["from"] == "local"
    copy = copies["us-west-2"]
    assert tags(plain("ec2", "us-west-2"), copy)["imgpipe:state"] == "published"
    assert tags(plain("ec2"), imported[1])["imgpipe:state"] == "published"
    assert plain("ssm", "us-west-2").get_parameter(Name="/images/demo/latest")["Parameter"]["Value"] == copy
    assert leftovers(tmp_path, isolated_state)["journal"] == []
