"""`builder: aws` through the real pipeline against moto on loopback: key pair, security
group and instance are made and removed, Ansible provisions a stand-in for the instance
over real SSH (pinned host key from the user data), the AMI is created, tagged, copied,
shared and recorded as region:ami-id. A failure or interrupt at any stage leaves nothing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from imgpipe.builders.aws import AwsBuilder
from imgpipe.errors import BuildError, Interrupted, PublishError, SpecError
from imgpipe.events import Event
from imgpipe.journal import collect
from imgpipe.pipeline import BakeOptions, OnError, bake
from imgpipe.spec import load_spec
from tests.aws.conftest import (
    SOURCE_REGION,
    build_resources,
    inject,
    inventory,
    plain,
    seed_ami,
    tags,
    throttle,
)
from tests.aws.standin import InstanceWatcher, SshdStandIn
from tests.conftest import write

ACCOUNT = "123456789012"
ROLE = """\
- name: Write the marker
  ansible.builtin.copy:
    content: "{{ marker_text }}\\n"
    dest: "{{ marker_path }}"
    mode: "0644"
- name: Wait if asked (lets a test interrupt provisioning)
  ansible.builtin.command: sleep {{ marker_sleep }}
  when: marker_sleep | int > 0
"""


def spec_text(
    roles: Path,
    marker: Path,
    port: int,
    *,
    source: str,
    sleep: int = 0,
    mode: str = "standard",
    ssh_timeout: int = 60,
    ami_name: str = "{spec}-{target}-{build_id}",
    verify: str = "{builtin_checks: warn}",
    extra: str = "",
    provision_extra: str = "",
) -> str:
    return f"""\
imgpipe: 1
name: demo
seal: {{enabled: false}}  # the stand-in is this host's own sshd: never seal it
verify: {verify}  # builtin_checks: warn: the test boot is this host, as the build was
provision:
{provision_extra}  roles_path: [{roles}]
  roles:
    - role: marker
      vars: {{marker_text: provisioned-in-ec2, marker_path: "{marker}", marker_sleep: {sleep}}}
targets:
  ec2:
    builder: aws
    aws: {{region: {SOURCE_REGION}, retry: {{mode: {mode}, max_attempts: 12}}}}
    {source}
    instance_type: t3.micro
    ssh_host: 127.0.0.1
    ssh_port: {port}
    ssh_cidrs: [127.0.0.1/32]
    ssh_user: root  # the stand-in is this host's sshd, which has no imgpipe-build user
    ssh_timeout_s: {ssh_timeout}
    poll_interval: 0
    ami_name: "{ami_name}"
    publish:
      copy_to: [eu-west-1]
      tags: {{team: web}}
      share_with: ["{ACCOUNT}"]
      ssm_parameter: /images/demo/latest
{extra}"""


class Ec2Bake:
    """One test's world: moto, a source AMI, the sshd stand-in and a watcher that starts
    it for the build instance, plus hooks on the builder's AWS session."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.roles = tmp_path / "roles"
        write(self.roles / "marker" / "tasks" / "main.yml", ROLE)
        self.marker = tmp_path / "marker.txt"
        self.source_ami, self.source_snaps = seed_ami(name="debian-12-base")
        self.stand_in = SshdStandIn(tmp_path / "instance")
        self.host_key: str | None = None  # set: the stand-in presents a different identity
        self.watcher = InstanceWatcher(lambda _id, user_data: self.stand_in.serve(user_data, self.host_key))
        self.session_hooks: list = []
        self.sessions: list = []
        self.cancel = threading.Event()
        self.events: list[Event] = []
        real = AwsBuilder.make_session

        def hooked_session(builder: AwsBuilder):
            session = real(builder)
            self.sessions.append(session)
            for hook in self.session_hooks:
                hook(session)
            return session

        monkeypatch.setattr(AwsBuilder, "make_session", hooked_session)
        monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))

    def run(self, source: str | None = None, on_error: OnError = OnError.cleanup, **spec: Any):
        """Bake the `ec2` target; `spec` overrides spec_text's keywords."""
        source = source or f"source_ami: {self.source_ami}"
        text = spec_text(self.roles, self.marker, self.stand_in.port, source=source, **spec)
        loaded = load_spec(write(self.tmp / "spec.yml", text))
        self.watcher.start()
        try:
            options = BakeOptions(self.tmp / "out", ("ec2",), {}, on_error)
            return bake(loaded, options, self, self.cancel)
        finally:
            try:
                self.watcher.stop()
            finally:
                self.stand_in.close()

    def emit(self, event: Event) -> None:  # the bake's event sink
        self.events.append(event)

    def leftovers(self, state: Path) -> dict[str, object]:
        """Everything a build could leave, beyond the seeded source AMI."""
        images, snaps = {}, {}
        for region, (region_images, region_snaps) in inventory().items():
            images[region] = sorted(region_images - {self.source_ami})
            snaps[region] = sorted(region_snaps - set(self.source_snaps))
        return {
            **build_resources(),
            "images": {r: v for r, v in images.items() if v},
            "snapshots": {r: v for r, v in snaps.items() if v},
            "ssm": [p["Name"] for p in plain("ssm").describe_parameters()["Parameters"]],
            "journal": sorted(p.name for p in (state / "journal").glob("*.json")),
            "workdirs": sorted(p.name for p in (self.tmp / "cache" / "work").glob("*")),
        }


NOTHING = {
    "instances": [],
    "key_pairs": [],
    "groups": [],
    "images": {},
    "snapshots": {},
    "ssm": [],
    "journal": [],
    "workdirs": [],
}


@pytest.fixture
def ec2_bake(moto, tmp_path, monkeypatch, isolated_state):
    return Ec2Bake(tmp_path, monkeypatch)


def record_calls(session, operation: str, calls: list) -> None:
    session.events.register(
        f"provide-client-params.ec2.{operation}", lambda params, **_: calls.append(dict(params))
    )


def test_bake_in_ec2_provisions_over_ssh_and_publishes_the_ami(ec2_bake, isolated_state):
    runs, ingress = [], []
    ec2_bake.session_hooks.append(lambda s: record_calls(s, "RunInstances", runs))
    ec2_bake.session_hooks.append(lambda s: record_calls(s, "AuthorizeSecurityGroupIngress", ingress))
    result = ec2_bake.run()
    assert result.ok, result.errors

    # real Ansible ran over real SSH against the stand-in the user data described
    assert ec2_bake.marker.read_text() == "provisioned-in-ec2\n"
    launch, test_boot = runs  # the build instance, then one of the new AMI for the image tests
    assert launch["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert launch["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 by default
    assert "IamInstanceProfile" not in launch
    assert launch["ImageId"] == ec2_bake.source_ami and launch["KeyName"].startswith("imgpipe-")
    assert "ed25519_private" in launch["UserData"]  # the host key imgpipe pinned before launch
    assert {t["Key"] for t in launch["TagSpecifications"][0]["Tags"]} >= {"imgpipe:build-id", "Name"}
    (rule,) = ingress[0]["IpPermissions"]
    assert rule["IpRanges"] == [{"CidrIp": "127.0.0.1/32"}] and rule["FromPort"] == ec2_bake.stand_in.port

    messages = [e.data["text"] for e in ec2_bake.events if e.kind == "message"]
    assert any(m.startswith("AMI ami-") and ": available (" in m for m in messages), messages  # progress

    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    (build,) = manifest["builds"]
    assert build["builder_type"] == "imgpipe.aws" and build["files"] == []
    regions = dict(part.split(":") for part in build["artifact_id"].split(","))
    assert list(regions) == [SOURCE_REGION, "eu-west-1"]
    records = {img["region"]: img for img in build["custom_data"]["images"]}
    assert test_boot["ImageId"] == regions[SOURCE_REGION] and "KeyName" not in test_boot
    assert launch["UserData"] != test_boot["UserData"]  # new client and host keys
    verify = manifest["imgpipe"]["targets"]["ec2"]["verify"]
    assert verify["verified"] and verify["ok"]
    assert manifest["imgpipe"]["targets"]["ec2"]["source"]["image_id"] == ec2_bake.source_ami
    for region, image_id in regions.items():
        ec2 = plain("ec2", region)
        image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        assert image["Name"] == f"demo-ec2-{result.build_id}"
        assert records[region]["image_id"] == image_id and records[region]["snapshot_ids"]
        for resource in [image_id, *records[region]["snapshot_ids"]]:
            found = tags(ec2, resource)
            assert found["team"] == "web" and found["imgpipe:build-id"] == result.build_id, resource
            assert found["imgpipe:state"] == "published", resource
        perms = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
        assert perms["LaunchPermissions"] == [{"UserId": ACCOUNT}]
        ssm = plain("ssm", region).get_parameter(Name="/images/demo/latest")["Parameter"]
        assert ssm["Value"] == image_id

    left = ec2_bake.leftovers(isolated_state)
    assert {k: v for k, v in left.items() if k not in {"images", "snapshots", "ssm"}} == {
        "instances": [],
        "key_pairs": [],
        "groups": [],
        "journal": [],
        "workdirs": [],
    }
    assert left["images"] == {SOURCE_REGION: [regions[SOURCE_REGION]], "eu-west-1": [regions["eu-west-1"]]}


def test_source_ami_found_by_filter_newest_first(ec2_bake, isolated_state):
    time.sleep(1.1)  # CreationDate has whole seconds
    newer, _ = seed_ami(name="debian-12-base-2")
    runs = []
    ec2_bake.session_hooks.append(lambda s: record_calls(s, "RunInstances", runs))
    dates = {i["ImageId"]: i["CreationDate"] for i in plain("ec2").describe_images(Owners=["self"])["Images"]}
    assert dates[newer] > dates[ec2_bake.source_ami]
    result = ec2_bake.run(source="source_ami_filter: {owners: [self], name: debian-12-base*}")
    assert result.ok, result.errors
    assert runs[0]["ImageId"] == newer


def test_source_filter_without_match_is_a_clear_error(ec2_bake, isolated_state):
    result = ec2_bake.run(source="source_ami_filter: {owners: [self], name: ubuntu-*}")
    err = result.errors["ec2"]
    assert isinstance(err, SpecError) and "no AMI named 'ubuntu-*'" in str(err)
    assert ec2_bake.leftovers(isolated_state) == NOTHING


def test_a_stand_in_with_another_host_key_is_refused(ec2_bake, isolated_state):
    """Host key checking stays on: an instance that is not the one launched is not trusted."""
    from imgpipe.builders.sshkeys import generate_ed25519

    ec2_bake.host_key = generate_ed25519(ec2_bake.tmp / "other", "impostor").private.read_text()
    result = ec2_bake.run(ssh_timeout=10)
    err = result.errors["ec2"]
    assert isinstance(err, BuildError) and "pinned host key" in str(err)
    assert not ec2_bake.marker.exists()
    assert ec2_bake.leftovers(isolated_state) == NOTHING


FAULTS = [
    ("ImportKeyPair", 1, "key pair"),
    ("CreateSecurityGroup", 1, "security group"),
    ("AuthorizeSecurityGroupIngress", 1, "security group"),
    ("RunInstances", 1, "launch"),
    ("DescribeInstances", 1, "wait"),
    ("StopInstances", 1, "stop"),
    ("CreateImage", 1, "create_image"),
    ("DescribeImages", 2, "wait"),  # the 1st finds the source AMI, the 2nd waits for the new one
    ("CopyImage", 1, "copy"),
    ("ModifyImageAttribute", 1, "share"),
]


@pytest.mark.parametrize(("operation", "nth", "stage"), FAULTS, ids=[f[0] for f in FAULTS])
def test_failure_at_each_aws_stage_leaves_nothing(ec2_bake, isolated_state, operation, nth, stage):
    ec2_bake.session_hooks.append(lambda s: inject(s, "ec2", operation, nth=nth, region=None))
    result = ec2_bake.run()
    err = result.errors["ec2"]
    assert isinstance(err, BuildError | PublishError), err
    assert f"step {stage!r} failed" in str(err) and "UnauthorizedOperation" in str(err), str(err)
    assert "IAM policy" in (err.hint or "")
    assert ec2_bake.leftovers(isolated_state) == NOTHING
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["builds"] == [] and manifest["imgpipe"]["targets"]["ec2"]["ok"] is False


def test_failure_marking_the_amis_published_leaves_nothing(ec2_bake, isolated_state):
    """The last AWS call of a good build: if even that fails, no image stays behind."""
    # eu-west-1 sees CreateTags twice: tagging the copy, then marking it published
    ec2_bake.session_hooks.append(lambda s: inject(s, "ec2", "CreateTags", region="eu-west-1", nth=2))
    result = ec2_bake.run()
    assert "step 'tag' failed in eu-west-1" in str(result.errors["ec2"])
    assert ec2_bake.leftovers(isolated_state) == NOTHING


def lose_first_answer(session, operation: str) -> list[int]:
    """The request reaches moto, its answer is lost (a 503 instead): botocore retries
    a call that already took effect, as on a flaky network."""
    from botocore.httpsession import URLLib3Session

    from tests.aws.conftest import error_response

    sent = [0]

    def handler(request, **_):
        sent[0] += 1
        if sent[0] == 1:
            URLLib3Session().send(request)
            return error_response(request, 503, "ServiceUnavailable", "answer lost")
        return None

    session.events.register(f"before-send.ec2.{operation}", handler)
    return sent


@pytest.mark.parametrize(
    "operation", ["ImportKeyPair", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress"]
)
def test_a_retried_create_that_already_took_effect_is_not_a_failure(ec2_bake, isolated_state, operation):
    counters = []
    ec2_bake.session_hooks.append(lambda s: counters.append(lose_first_answer(s, operation)))
    result = ec2_bake.run()
    assert result.ok, result.errors
    assert counters[0][0] >= 2  # the call was really sent twice
    left = ec2_bake.leftovers(isolated_state)
    assert (left["instances"], left["key_pairs"], left["groups"], left["journal"]) == ([], [], [], [])


def test_failed_provisioning_leaves_nothing(ec2_bake, isolated_state):
    write(ec2_bake.roles / "marker" / "tasks" / "main.yml", "- ansible.builtin.fail: {msg: role refuses}\n")
    result = ec2_bake.run()
    assert "role refuses" in str(result.errors["ec2"])
    assert ec2_bake.leftovers(isolated_state) == NOTHING


def test_abort_keeps_the_instance_reachable_until_gc_build(ec2_bake, isolated_state):
    write(ec2_bake.roles / "marker" / "tasks" / "main.yml", "- ansible.builtin.fail: {msg: role refuses}\n")
    result = ec2_bake.run(on_error=OnError.abort)
    assert "role refuses" in str(result.errors["ec2"])
    (kept,) = [e for e in ec2_bake.events if e.kind == "kept"]
    left = ec2_bake.leftovers(isolated_state)
    (instance,) = left["instances"]
    assert instance in kept.data["hint"] and f"imgpipe gc --build {result.build_id}" in kept.data["hint"]
    assert f"-p {ec2_bake.stand_in.port}" in kept.data["hint"]  # the SSH command that reaches it
    assert len(left["key_pairs"]) == 1 and len(left["groups"]) == 1 and len(left["journal"]) == 1
    assert left["images"] == {}  # nothing was published, so nothing to keep there

    removed, failures = collect(isolated_state / "journal", build_id=result.build_id)
    assert failures == [] and len(removed) == 1
    assert ec2_bake.leftovers(isolated_state) == NOTHING


INTERRUPTS = [
    "ImportKeyPair",
    "CreateSecurityGroup",
    "RunInstances",
    "StopInstances",
    "CreateImage",
    "CopyImage",
]


@pytest.mark.parametrize("operation", INTERRUPTS)
def test_interrupt_at_each_aws_stage_leaves_nothing(ec2_bake, isolated_state, operation):
    """Ctrl-C sets the bake's cancel event (what the CLI's signal handler does) while
    the call is in flight; the build stops at its next wait or checkpoint."""

    def hook(session):
        session.events.register(f"before-call.ec2.{operation}", lambda **_: ec2_bake.cancel.set())

    ec2_bake.session_hooks.append(hook)
    result = ec2_bake.run()
    assert isinstance(result.errors["ec2"], Interrupted), result.errors
    assert ec2_bake.leftovers(isolated_state) == NOTHING


def test_interrupt_during_provisioning_leaves_nothing(ec2_bake, isolated_state):
    def cancel_once_marker_written():
        while not ec2_bake.marker.exists() and not ec2_bake.cancel.wait(0.1):
            pass
        ec2_bake.cancel.set()

    threading.Thread(target=cancel_once_marker_written, daemon=True).start()
    result = ec2_bake.run(sleep=120)
    assert isinstance(result.errors["ec2"], Interrupted), result.errors
    assert ec2_bake.leftovers(isolated_state) == NOTHING


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_bake_survives_30_percent_throttling(ec2_bake, isolated_state, monkeypatch, mode):
    from botocore.retries.bucket import TokenBucket
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    monkeypatch.setattr(TokenBucket, "acquire", lambda self, amount=1, block=True: True)
    counters = []
    ec2_bake.session_hooks.append(lambda s: counters.append(throttle(s, "ec2", 0.3)))
    result = ec2_bake.run(mode=mode)
    assert result.ok, result.errors
    assert counters[0]() >= 5  # throttled calls were really answered 503 and retried
    (build,) = json.loads((result.output_dir / "manifest.json").read_text())["builds"]
    regions = dict(part.split(":") for part in build["artifact_id"].split(","))
    assert sorted(ec2_bake.leftovers(isolated_state)["images"][SOURCE_REGION]) == [regions[SOURCE_REGION]]
    assert ec2_bake.leftovers(isolated_state)["key_pairs"] == []


def test_a_failed_create_image_leaves_the_published_ami_of_its_name(ec2_bake, isolated_state):
    """ami_name without {build_id}: this bake's CreateImage fails on the name an earlier build
    published (InvalidAMIName.Duplicate). Its undo removes only what this bake made."""
    earlier, earlier_snaps = seed_ami(name="demo-ec2")
    plain("ec2").create_tags(
        Resources=[earlier, *earlier_snaps],
        Tags=[
            {"Key": "imgpipe:build-id", "Value": "20261101T000000Z-aaaaaa"},
            {"Key": "imgpipe:state", "Value": "published"},
        ],
    )
    ec2_bake.session_hooks.append(
        lambda s: inject(s, "ec2", "CreateImage", status=400, code="InvalidAMIName.Duplicate")
    )
    result = ec2_bake.run(ami_name="{spec}-{target}")
    assert "InvalidAMIName.Duplicate" in str(result.errors["ec2"])
    left = ec2_bake.leftovers(isolated_state)
    assert left["images"] == {SOURCE_REGION: [earlier]} and left["snapshots"] == {
        SOURCE_REGION: earlier_snaps
    }
    assert {**left, "images": {}, "snapshots": {}} == NOTHING


DR_PUBLISHER = f"""\
publish:
  dr:
    publisher: ami
    from: ec2
    aws: {{region: {SOURCE_REGION}}}
    copy_to: [us-west-2]
    tags: {{purpose: dr}}
    ssm_parameter: /images/demo/dr
"""


def test_an_ami_publisher_takes_the_ec2_targets_ami(ec2_bake, isolated_state):
    """`publisher: ami` works on any AMI: here the EC2 builder's, after the target's own
    `publish:` shorthand copied it to eu-west-1."""
    result = ec2_bake.run(extra=DR_PUBLISHER)
    assert result.ok, result.errors
    builds = {b["name"]: b for b in json.loads((result.output_dir / "manifest.json").read_text())["builds"]}
    own = dict(part.split(":") for part in builds["ec2"]["artifact_id"].split(","))
    dr = dict(part.split(":") for part in builds["ec2:dr"]["artifact_id"].split(","))
    assert list(own) == [SOURCE_REGION, "eu-west-1"] and list(dr) == [SOURCE_REGION, "us-west-2"]
    assert builds["ec2:dr"]["builder_type"] == "imgpipe.ami" and dr[SOURCE_REGION] == own[SOURCE_REGION]
    copy = tags(plain("ec2", "us-west-2"), dr["us-west-2"])
    assert copy["purpose"] == "dr" and copy["team"] == "web"  # its own tags, and the image's
    assert copy["imgpipe:state"] == "published" and copy["imgpipe:build-id"] == result.build_id
    ssm = plain("ssm", "us-west-2").get_parameter(Name="/images/demo/dr")["Parameter"]
    assert ssm["Value"] == dr["us-west-2"]


def test_a_failing_ami_publisher_undoes_the_whole_target(ec2_bake, isolated_state, monkeypatch):
    from imgpipe.publish.ami_publisher import AmiPublisherPlugin

    real = AmiPublisherPlugin.make_session

    def failing_copy(self):
        session = real(self)
        inject(session, "ec2", "CopyImage", region="us-west-2", code="InvalidRegion", status=400)
        return session

    monkeypatch.setattr(AmiPublisherPlugin, "make_session", failing_copy)
    result = ec2_bake.run(extra=DR_PUBLISHER)
    assert "step 'copy' failed in us-west-2" in str(result.errors["ec2"]), result.errors
    assert ec2_bake.leftovers(isolated_state) == NOTHING  # eu-west-1's copy and the AMI went too


IMAGE_TESTS = """\
def test_the_role_ran(host):
    assert host.file("{marker}").content_string == "provisioned-in-ec2\\n"


def test_{name}(host):
    assert host.file("{path}").exists, "{path} is missing"
"""


def test_a_failing_image_test_publishes_no_ami(ec2_bake, isolated_state):
    """The tests run on an instance of the new AMI (the stand-in here: moto runs none)
    before anything is published; one failure removes the AMI, nothing is left."""
    tests = write(
        ec2_bake.tmp / "test_image.py",
        IMAGE_TESTS.format(marker=ec2_bake.marker, name="missing", path="/no/such/file"),
    )
    result = ec2_bake.run(verify=f"{{testinfra: [{tests.name}], builtin_checks: warn}}")
    err = str(result.errors["ec2"])
    assert "failed its tests on a fresh boot (1 failure)" in err
    assert "test_missing" in err and "/no/such/file is missing" in err  # the test and its assertion
    assert "test_the_role_ran" not in err
    report = result.output_dir / "logs" / "ec2" / "verify"
    assert "test_missing" in (report / "testinfra.xml").read_text()
    assert "1 failed, 1 passed" in (report / "testinfra.log").read_text()
    assert ec2_bake.leftovers(isolated_state) == NOTHING  # no AMI, copy, test instance or journal


def test_passing_image_tests_publish_and_the_checks_are_recorded(ec2_bake, isolated_state):
    tests = write(
        ec2_bake.tmp / "test_image.py",
        IMAGE_TESTS.format(marker=ec2_bake.marker, name="sshd", path="/usr/sbin/sshd"),
    )
    result = ec2_bake.run(verify=f"{{testinfra: [{tests.name}], builtin_checks: warn}}")
    assert result.ok, result.errors
    verify = json.loads((result.output_dir / "manifest.json").read_text())["imgpipe"]["targets"]["ec2"][
        "verify"
    ]
    assert verify["ok"] and verify["failures"] == []
    # the stand-in is this host, as the build instance was: the checks see the same machine
    assert verify["checks"]["machine_id"] == "failed" and verify["checks"]["build_key"] == "passed"
    assert {c["name"] for c in verify["failed_checks"]} >= {"machine_id", "hostname"}
    left = ec2_bake.leftovers(isolated_state)
    assert left["instances"] == [] and left["journal"] == []


def test_failed_builtin_checks_fail_the_target_by_default(ec2_bake, isolated_state):
    result = ec2_bake.run(verify="{}")
    err = str(result.errors["ec2"])
    assert "built-in check machine_id: machine-id" in err and "built-in check hostname" in err
    assert "seal leaves the build VM's identity" in err
    assert ec2_bake.leftovers(isolated_state) == NOTHING
