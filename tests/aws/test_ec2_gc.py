"""After kill -9 an EC2 bake leaves a running instance, its security group and key pair:
`imgpipe gc` finds each through the journal (written before each resource existed) and
removes them. The AMI cleaner works by name and the build's tag, so an image whose id was
never seen goes too, and another build's image of the same name stays."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from imgpipe.aws import images as amis
from imgpipe.builders.sshkeys import free_loopback_port
from imgpipe.journal import Resources, clean_record
from tests.aws.conftest import SOURCE_REGION, build_resources, inventory, plain, seed_ami
from tests.conftest import IMGPIPE, REPO, write


def test_gc_after_kill_9_removes_instance_group_and_key(moto, tmp_path, isolated_state):
    source, _ = seed_ami(name="debian-12-base")
    closed_port = free_loopback_port()  # nothing answers: the bake waits for SSH until killed
    spec = write(
        tmp_path / "spec.yml",
        f"""\
imgpipe: 1
name: demo
seal: {{enabled: false}}
targets:
  ec2:
    builder: aws
    aws: {{region: {SOURCE_REGION}}}
    source_ami: {source}
    ssh_host: 127.0.0.1
    ssh_port: {closed_port}
    ssh_cidrs: [127.0.0.1/32]
    poll_interval: 0
""",
    )
    env = {**os.environ, "IMGPIPE_CACHE_DIR": str(tmp_path / "cache")}
    bake = subprocess.Popen(
        [*IMGPIPE, "bake", str(spec), "--output", str(tmp_path / "out")],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not build_resources()["instances"]:
            assert bake.poll() is None, "the bake ended before its instance ran"
            assert time.monotonic() < deadline, "no build instance appeared"
            time.sleep(0.1)
        time.sleep(0.5)  # into the SSH wait
    finally:
        bake.send_signal(signal.SIGKILL)
        bake.wait()
    before = build_resources()
    assert len(before["instances"]) == 1 and len(before["key_pairs"]) == 1 and len(before["groups"]) == 1

    gc = subprocess.run([*IMGPIPE, "gc"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert "removed" in gc.stdout
    assert build_resources() == {"instances": [], "key_pairs": [], "groups": []}
    assert list((isolated_state / "journal").glob("*.json")) == []
    assert list((tmp_path / "cache" / "work").glob("*")) == []


def _tagged_ami(name: str, build_id: str, state: str) -> tuple[str, list[str]]:
    image_id, snapshots = seed_ami(name=name)
    plain("ec2").create_tags(
        Resources=[image_id, *snapshots],
        Tags=[{"Key": "imgpipe:build-id", "Value": build_id}, {"Key": "imgpipe:state", "Value": state}],
    )
    return image_id, snapshots


def test_ami_journaled_by_name_is_removed_only_with_this_builds_tag(moto, tmp_path):
    """The journal holds the AMI's name from before CreateImage answered; its cleaner finds
    the image and its snapshots by that name and the build's tag. An image of the same name
    another build published (ami_name without {build_id}) stays, as does any other name."""
    name = "demo-ec2-20261127T000000Z-abcdef"
    ours, our_snaps = _tagged_ami(name, "b-1", "building")
    published, published_snaps = _tagged_ami(name, "b-0", "published")  # moto allows the same name
    other, other_snaps = _tagged_ami("demo-ec2-someone-else", "b-1", "building")
    resources = Resources(tmp_path, "b-1", "ec2")
    resources.track("aws-ami", amis.remove_images_named, region=SOURCE_REGION, name=name, build_id="b-1")
    assert clean_record(resources._record) == []
    images, snaps = inventory()[SOURCE_REGION]
    assert ours not in images and not set(our_snaps) & snaps
    assert {published, other} <= images and set(published_snaps + other_snaps) <= snaps


def test_ami_journaled_by_name_without_build_id_removes_only_a_building_image(moto, tmp_path):
    """Journals written before the build id was recorded: only an image still `building` goes."""
    ours, _ = _tagged_ami("demo-ec2", "b-1", "building")
    published, _ = _tagged_ami("demo-ec2", "b-0", "published")
    resources = Resources(tmp_path, "b-1", "ec2")
    resources.track("aws-ami", amis.remove_images_named, region=SOURCE_REGION, name="demo-ec2")
    assert clean_record(resources._record) == []
    images, _ = inventory()[SOURCE_REGION]
    assert ours not in images and published in images


def _leave_build_resources(build_id: str) -> None:
    """What a build on another machine left: tagged, with no journal here."""
    from imgpipe.aws import buildres

    ec2 = plain("ec2")
    tags = buildres.build_tags(build_id, "ec2", "demo")
    name = tags["Name"]
    ec2.create_key_pair(KeyName=name, TagSpecifications=buildres.tag_specs(tags, "key-pair"))
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(
        GroupName=name,
        Description="d",
        VpcId=vpc,
        TagSpecifications=buildres.tag_specs(tags, "security-group"),
    )["GroupId"]
    ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[group],
        TagSpecifications=buildres.tag_specs(tags, "instance"),
    )


def _snapshot(build_id: str, state: str) -> str:
    ec2 = plain("ec2")
    volume = ec2.create_volume(Size=1, AvailabilityZone=f"{SOURCE_REGION}a")["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2.delete_volume(VolumeId=volume)
    ec2.create_tags(
        Resources=[snapshot],
        Tags=[{"Key": "imgpipe:build-id", "Value": build_id}, {"Key": "imgpipe:state", "Value": state}],
    )
    return snapshot  # type: ignore[no-any-return]


def test_gc_sweeps_a_region_for_tagged_leftovers_of_old_builds(aws_proxy, tmp_path, isolated_state):
    old, fresh = "20261101T000000Z-aaaaaa", time.strftime("%Y%m%dT%H%M%SZ-bbbbbb", time.gmtime())
    _leave_build_resources(old)
    _leave_build_resources(fresh)
    kept_ami, _ = seed_ami(name="product")  # published AMIs are products: never swept
    half_done, half_snaps = seed_ami(name="half-done")  # a build died before publishing it
    for image, state in ((kept_ami, "published"), (half_done, "building")):
        plain("ec2").create_tags(
            Resources=[image],
            Tags=[{"Key": "imgpipe:build-id", "Value": old}, {"Key": "imgpipe:state", "Value": state}],
        )
    kept_snap, half_snap = _snapshot(old, "published"), _snapshot(old, "building")
    # the sweep also asks for import tasks, which moto lacks: the proxy answers those
    env = {**os.environ, "IMGPIPE_CACHE_DIR": str(tmp_path / "cache"), "AWS_ENDPOINT_URL": aws_proxy.url}

    def gc(*args):
        return subprocess.run(
            [*IMGPIPE, "gc", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )

    before = (build_resources(), inventory())
    dry = gc("--aws-region", SOURCE_REGION, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would remove") == 5 and old in dry.stdout and fresh not in dry.stdout
    assert f"image {half_done}" in dry.stdout and kept_ami not in dry.stdout
    assert f"snapshot {half_snap}" in dry.stdout and kept_snap not in dry.stdout
    assert (build_resources(), inventory()) == before  # a dry run changes nothing in moto

    swept = gc("--aws-region", SOURCE_REGION)
    assert swept.returncode == 0, swept.stderr
    left = build_resources()
    assert left["key_pairs"] == [f"imgpipe-{fresh}-ec2"] and left["groups"] == [f"imgpipe-{fresh}-ec2"]
    assert len(left["instances"]) == 1
    images, snapshots = inventory()[SOURCE_REGION]
    assert kept_ami in images and half_done not in images and not set(half_snaps) & snapshots
    assert kept_snap in snapshots and half_snap not in snapshots
