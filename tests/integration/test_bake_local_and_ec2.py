"""One spec, two clouds: a libvirt target and an EC2 target baked in parallel by one
`imgpipe bake`, with per-target readable output. EC2 is moto on loopback; its build
instance is played by a real VM booted from the instance's own user data (NoCloud), so
the EC2 target gets the same Ansible provisioning and the same seal as the local one."""

from __future__ import annotations

import json
import os
import re

import pytest

from imgpipe.builders.sshkeys import free_loopback_port, key_fingerprint
from imgpipe.cloudinit import write_nocloud_seed
from tests.aws.conftest import SOURCE_REGION, moto, moto_server, plain, seed_ami  # noqa: F401 - fixtures
from tests.aws.standin import InstanceWatcher, cloud_config
from tests.conftest import write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe
from tests.integration.vmboot import BootedImage

SPEC = """\
imgpipe: 1
name: both
# moto's AMI has no disk to boot: the EC2 test boot is tested in tests/aws (sshd stand-in),
# the local one by test_bake_web
verify: {{enabled: false}}
provision:
  roles_path: [{roles}]
  roles: [marker]
targets:
  local: {{builder: libvirt, disk_gb: 4}}
  ec2:
    builder: aws
    aws: {{region: {region}}}
    source_ami: {ami}
    ssh_host: 127.0.0.1
    ssh_port: {port}
    ssh_cidrs: [127.0.0.1/32]
    ssh_timeout_s: 900
    poll_interval: 1
    publish: {{tags: {{team: web}}}}
"""


class VmStandIn:
    """Boots the cached base image with the build instance's user data as its seed."""

    def __init__(self, base_image, workdir) -> None:
        self.base, self.dir = base_image, workdir
        self.port = free_loopback_port()
        self.vm: BootedImage | None = None
        self.host_key = ""

    def serve(self, instance_id: str, user_data: str) -> None:
        config = cloud_config(user_data)
        self.host_key = config["ssh_keys"]["ed25519_public"]
        seed = self.dir / "seed.iso"
        write_nocloud_seed(seed, instance_id=instance_id, hostname="ec2-stand-in", user_data=config)
        self.vm = BootedImage(self.base, self.dir, seed=seed, ssh_port=self.port)

    def close(self) -> None:
        if self.vm is not None:
            self.vm.close()


@pytest.fixture
def vm_stand_in(base_image, tmp_path):
    stand_in = VmStandIn(base_image, tmp_path)
    yield stand_in
    stand_in.close()


@pytest.mark.usefixtures("moto")
def test_local_and_ec2_targets_bake_in_parallel(imgpipe_env, vm_stand_in, outside_roles, tmp_path):
    source_ami, _ = seed_ami(name="debian-12-base")
    spec = write(
        tmp_path / "both.yml",
        SPEC.format(roles=outside_roles, region=SOURCE_REGION, ami=source_ami, port=vm_stand_in.port),
    )
    aws_env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "MOTO_"))}
    watcher = InstanceWatcher(vm_stand_in.serve)
    watcher.start()
    try:
        out = run_imgpipe({**imgpipe_env, **aws_env}, "bake", str(spec), "--output", str(tmp_path / "out"))
    finally:
        watcher.stop()
    assert out.returncode == 0, out.stdout + out.stderr + (vm_stand_in.vm.tail() if vm_stand_in.vm else "")

    # readable: every progress line (stderr) names its target; the two builds overlapped
    lines = [ln for ln in out.stderr.splitlines() if re.match(r"\d\d:\d\d:\d\d \[", ln)]
    assert {re.match(r"\S+ \[(\w+)\]", ln).group(1) for ln in lines} == {"local", "ec2"}
    # both targets were in flight at once: each started before the other finished (a test
    # of order, not of how long a VM takes to start)
    order = [ln.split(" ", 1)[1] for ln in lines]
    assert order.index("[ec2] source ...") < order.index("[local] finished")
    assert order.index("[local] source ...") < order.index("[ec2] finished")

    build_dir = build_dir_from(out.stdout)
    manifest = json.loads((build_dir / "manifest.json").read_text())
    builds = {b["name"]: b for b in manifest["builds"]}
    assert builds["local"]["artifact_id"] == "both-local.qcow2" and (build_dir / "both-local.qcow2").is_file()
    region, image_id = builds["ec2"]["artifact_id"].split(":")
    assert region == SOURCE_REGION and builds["ec2"]["custom_data"]["images"][0]["snapshot_ids"]
    assert plain("ec2").describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"

    # the EC2 target ran the same provisioning and seal on the stand-in, with its pinned key
    ec2 = manifest["imgpipe"]["targets"]["ec2"]
    assert ec2["build_vm"]["host_key"] == key_fingerprint(vm_stand_in.host_key)
    assert ec2["build_vm"]["machine_id"] and ec2["timings"]["seal"] > 1 and ec2["timings"]["provision"] > 1
    assert leftovers(imgpipe_env, manifest["last_run_uuid"]) == NOTHING
    ec2_client = plain("ec2")
    assert ec2_client.describe_key_pairs()["KeyPairs"] == []
    assert [
        g for g in ec2_client.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"
    ] == []
