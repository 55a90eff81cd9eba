"""Spec errors an EC2 bake can only find once it asks AWS (no AMI matches the filter) or
knows the build (the rendered ami_name) are found before anything exists in AWS, and
`imgpipe bake` exits 2 for them, as for any bad input, not 1 as for a failed build."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from imgpipe.builders.sshkeys import free_loopback_port
from tests.aws.conftest import SOURCE_REGION, build_resources, inventory, seed_ami
from tests.conftest import IMGPIPE, REPO, write


def ec2_spec(tmp_path: Path, source: str, ami_name: str = "{spec}-{target}-{build_id}") -> Path:
    return write(
        tmp_path / "spec.yml",
        f"""\
imgpipe: 1
name: demo
seal: {{enabled: false}}
targets:
  ec2:
    builder: aws
    aws: {{region: {SOURCE_REGION}}}
    {source}
    ssh_host: 127.0.0.1
    ssh_port: {free_loopback_port()}  # nothing answers: a build that got this far fails fast
    ssh_timeout_s: 10
    ssh_cidrs: [127.0.0.1/32]
    poll_interval: 0
    ami_name: "{ami_name}"
""",
    )


def imgpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGPIPE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([*IMGPIPE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def leftovers(tmp_path: Path, state: Path) -> dict[str, object]:
    """What a build could leave: EC2 resources, every AMI and snapshot, journal, work dirs."""
    return {
        **build_resources(),
        "images_and_snapshots": inventory(),
        "journal": sorted(p.name for p in (state / "journal").glob("*.json")),
        "workdirs": sorted(p.name for p in (tmp_path / "cache" / "work").glob("*")),
    }


NOTHING = {"instances": [], "key_pairs": [], "groups": [], "journal": [], "workdirs": []}


def test_source_filter_without_match_exits_2_and_creates_nothing(moto, tmp_path, isolated_state):
    spec = ec2_spec(tmp_path, "source_ami_filter: {owners: [self], name: ubuntu-*}")
    out = imgpipe(tmp_path, "bake", str(spec), "--output", str(tmp_path / "out"))
    assert out.returncode == 2, out.stderr
    assert f"no AMI named 'ubuntu-*' (x86_64) owned by self in {SOURCE_REGION}" in out.stderr
    assert "hint: check source_ami_filter's name pattern" in out.stderr
    empty = {region: (set(), set()) for region in inventory()}
    assert leftovers(tmp_path, isolated_state) == {**NOTHING, "images_and_snapshots": empty}


def test_ami_name_too_long_once_rendered_exits_2_before_the_instance(moto, tmp_path, isolated_state):
    source, _ = seed_ami(name="debian-12-base")
    seeded = inventory()
    spec = ec2_spec(tmp_path, f"source_ami: {source}", ami_name="x" * 110 + "-{build_id}")
    out = imgpipe(tmp_path, "bake", str(spec), "--output", str(tmp_path / "out"))
    assert out.returncode == 2, out.stderr
    assert "not a valid AMI name" in out.stderr and "3-128 characters" in out.stderr
    assert leftovers(tmp_path, isolated_state) == {**NOTHING, "images_and_snapshots": seeded}


def test_ami_name_with_a_character_aws_refuses_fails_validate(moto, tmp_path):
    spec = ec2_spec(tmp_path, "source_ami: ami-12345678", ami_name="{spec}:{target}!")
    out = imgpipe(tmp_path, "validate", str(spec))
    assert out.returncode == 2, out.stderr
    assert f"{spec}:14:15: targets.ec2.ami_name:" in out.stderr and "':', '!'" in out.stderr
