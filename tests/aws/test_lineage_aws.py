"""A child `builder: aws` target built on a parent's AMI (moto on loopback, the sshd
stand-in as the instance): `source: {parent: base@stable}` resolves through the catalog to
the parent build's AMI in the target's region, the build instance is launched from it, and
the manifest's source names the parent. No source_ami in the child's target."""

from __future__ import annotations

from imgpipe.catalog import open_catalog
from imgpipe.lineage import with_parents
from imgpipe.pipeline import BakeOptions, bake
from imgpipe.spec import load_spec
from tests.aws.conftest import SOURCE_REGION, seed_ami
from tests.aws.test_ec2_builder import ec2_bake, record_calls, spec_text  # noqa: F401 - the fixture
from tests.conftest import write


def test_an_aws_child_starts_from_its_parents_ami_in_its_region(ec2_bake, tmp_path):  # noqa: F811
    other_region, _ = seed_ami("eu-west-1", name="base-eu")  # the parent's copy elsewhere: not taken
    with open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        catalog.claim_spec("base", "test:base")
        build = "20261127T101010Z-aaaaaa"
        catalog.start_build(build, "base", "/specs/base.yml", ["ec2"], imgpipe_version="0", ansible_core="0")
        images = [
            {"region": "eu-west-1", "image_id": other_region, "snapshot_ids": []},
            {"region": SOURCE_REGION, "image_id": ec2_bake.source_ami, "snapshot_ids": []},
        ]
        catalog.finish_target(
            build,
            "ec2",
            status="succeeded",
            fingerprint="f",
            fingerprint_parts={},
            publish_fingerprint=None,
            record={"artifact_id": ec2_bake.source_ami, "data": {"images": images}},
        )
        catalog.finish_build(build, "succeeded")
        journal = {"token": "t", "owner": {}, "from": None, "to": build, "by": "test", "state": "moving"}
        catalog.begin_channel_move("base", "stable", {**journal, "places": []})
        catalog.end_channel_move("base", "stable", "t", "moved")

        text = spec_text(ec2_bake.roles, ec2_bake.marker, ec2_bake.stand_in.port, source="")
        text = text.replace("name: demo\n", "name: demo\nsource: {parent: base@stable}\n")
        loaded = with_parents(catalog, load_spec(write(tmp_path / "child.yml", text)))

    runs: list = []
    ec2_bake.session_hooks.append(lambda s: record_calls(s, "RunInstances", runs))
    ec2_bake.watcher.start()
    try:
        result = bake(loaded, BakeOptions(tmp_path / "out", ("ec2",), {}), ec2_bake, ec2_bake.cancel)
    finally:
        ec2_bake.watcher.stop()
        ec2_bake.stand_in.close()
    assert result.ok, result.errors
    assert runs[0]["ImageId"] == ec2_bake.source_ami  # the parent's AMI in us-east-1
    (record,) = result.records
    assert record.source["kind"] == "ami" and record.source["image_id"] == ec2_bake.source_ami
    assert record.source["parent"] == {
        "ref": "base@stable",
        "build_id": build,
        "target": "ec2",
        "image_id": ec2_bake.source_ami,
    }
    assert ec2_bake.marker.read_text() == "provisioned-in-ec2\n"
