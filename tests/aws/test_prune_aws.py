"""Retention against the moto server on loopback: `prune` removes the builds its policy
lets go (every AMI in every region, the snapshots no other AMI uses, launch permissions),
never one of the "never removed" builds; a dry run changes nothing in moto, the catalog
or the files; a prune killed with SIGKILL is finished by the next one; with
deprecate_after_days, AMIs are deprecated by one prune and deleted by a later one."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imgpipe.aws import AwsSession, AwsSettings
from imgpipe.catalog import Catalog, open_catalog
from imgpipe.channels import Mover
from imgpipe.retention import prune
from tests.aws.conftest import REGIONS as ALL_REGIONS
from tests.aws.conftest import SOURCE_REGION, plain, seed_ami, snapshots_of
from tests.aws.recorded import record_ami_build
from tests.catalog.conftest import execute
from tests.conftest import IMGPIPE, REPO, write

REGIONS = (SOURCE_REGION, "eu-west-1")
NOW = datetime.now(UTC)


def spec_file(tmp: Path, retention: str) -> Path:
    return write(
        tmp / "web.yml",
        f"""\
imgpipe: 1
name: web
seal: {{enabled: false}}
retention: {retention}
targets:
  ec2:
    builder: aws
    aws: {{region: {SOURCE_REGION}}}
    source_ami: ami-12345678
""",
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as cat:
        cat.claim_spec("web", "ci:/specs/web.yml")
        yield cat


def url_of(catalog: Catalog) -> str:
    return f"sqlite:///{catalog.url_masked.removeprefix('sqlite:///')}"


def record_build(
    catalog: Catalog,
    build_id: str,
    days_old: float,
    spec: Path,
    images: dict[str, tuple[str, list[str]]],
    *,
    spec_name: str = "web",
    status: str = "succeeded",
    out: Path | None = None,
    parent: str | None = None,
) -> None:
    made_from = (parent, f"web@{parent}") if parent else None
    record_ami_build(
        catalog,
        build_id,
        images,
        spec=spec_name,
        spec_path=str(spec),
        status=status,
        parent=made_from,
        output_dir=str(out) if out else None,
    )
    when = (NOW - timedelta(days=days_old)).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    execute(url_of(catalog), "UPDATE build SET started_at = :t WHERE id = :i", t=when, i=build_id)


def ami_build(catalog: Catalog, build_id: str, days_old: float, spec: Path, **kw: Any) -> dict[str, str]:
    """A recorded build whose AMI exists in both regions; its AMI per region."""
    images = {region: seed_ami(region, f"web-{build_id}") for region in REGIONS}
    record_build(catalog, build_id, days_old, spec, images, **kw)
    return {region: ami for region, (ami, _) in images.items()}


def exists(region: str, image_id: str) -> bool:
    found = plain("ec2", region).describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])[
        "Images"
    ]
    return bool(found)


def snapshot_exists(region: str, snapshot_id: str) -> bool:
    snaps = plain("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return snapshot_id in {s["SnapshotId"] for s in snaps}


def session(_profile: str | None = None) -> AwsSession:
    return AwsSession(AwsSettings(region=SOURCE_REGION))


def test_keep_age_and_every_never_removed_rule(moto, catalog, tmp_path):
    spec = spec_file(tmp_path, "{keep: 1, max_age_days: 30}")
    b1 = ami_build(catalog, "b1", 100, spec)  # the stable channel points at it
    b2 = ami_build(catalog, "b2", 90, spec)  # a stopped instance runs from it
    b3 = ami_build(catalog, "b3", 80, spec)  # a launch template's second version uses it
    b4 = ami_build(catalog, "b4", 70, spec)  # tagged imgpipe:keep=true
    b5 = ami_build(catalog, "b5", 60, spec)  # parent of a kept build of another spec
    b6 = ami_build(catalog, "b6", 50, spec)  # goes
    b7 = ami_build(catalog, "b7", 20, spec)  # not older than max_age_days
    b8 = ami_build(catalog, "b8", 1, spec)  # the newest
    out = tmp_path / "out" / "web" / "b9"
    (out / "logs" / "ec2").mkdir(parents=True)
    (out / "logs" / "ec2" / "ansible-provision.log").write_text("failed\n")
    record_build(catalog, "b9", 55, spec, {}, status="failed", out=out)  # a failure's leftovers go
    Mover(catalog, session()).promote("web", "b1", "stable")
    ec2 = plain("ec2", SOURCE_REGION)
    instance = ec2.run_instances(ImageId=b2[SOURCE_REGION], MinCount=1, MaxCount=1)["Instances"][0]
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    eu = plain("ec2", "eu-west-1")
    template = eu.create_launch_template(
        LaunchTemplateName="app", LaunchTemplateData={"ImageId": b8["eu-west-1"]}
    )["LaunchTemplate"]
    eu.create_launch_template_version(
        LaunchTemplateId=template["LaunchTemplateId"], LaunchTemplateData={"ImageId": b3["eu-west-1"]}
    )
    eu.create_launch_template_version(  # the default version moves on; version 2 still counts
        LaunchTemplateId=template["LaunchTemplateId"], LaunchTemplateData={"ImageId": b8["eu-west-1"]}
    )
    ec2.create_tags(Resources=[b4[SOURCE_REGION]], Tags=[{"Key": "imgpipe:keep", "Value": "true"}])
    catalog.claim_spec("app", "ci:/specs/app.yml")
    record_build(catalog, "c1", 1, spec, {}, spec_name="app", parent="b5")
    snaps6 = {r: snapshots_of(plain("ec2", r), ami) for r, ami in b6.items()}

    report = prune(catalog, ["web"], session_for=session)

    assert report.failures == []
    plan = {b.build_id: b for p in report.specs for b in p.builds}
    assert {i for i, b in plan.items() if b.action == "remove"} == {"b6", "b9"}
    why = {i: "; ".join(b.reasons) for i, b in plan.items()}
    assert "channel stable" in why["b1"]
    assert f"AMI {b2[SOURCE_REGION]} in {SOURCE_REGION} is used by instance" in why["b2"]
    assert "(stopped)" in why["b2"]
    assert "launch template app version 2" in why["b3"]
    assert "tagged imgpipe:keep=true" in why["b4"]
    assert "parent of kept build app c1" in why["b5"]
    assert "not older than max_age_days (30)" in why["b7"]
    assert "newest succeeded build of target ec2" in why["b8"]
    for build in (b1, b2, b3, b4, b5, b7, b8):
        assert all(exists(r, ami) for r, ami in build.items())
    assert not any(exists(r, ami) for r, ami in b6.items())
    assert not any(snapshot_exists(r, s) for r, snaps in snaps6.items() for s in snaps)
    assert not out.exists()
    for build_id in ("b6", "b9"):
        view = catalog.get(build_id)
        assert view is not None and view.pruned_at is not None and view.pruning is None
    assert catalog.get("b5").pruned_at is None  # type: ignore[union-attr]

    again = prune(catalog, ["web"], session_for=session)  # nothing more to do
    assert again.removed() == [] and again.failures == []


def sharing(image_id: str, snapshot: str) -> Any:
    """An imgpipe session on which EC2 shows `image_id` made from `snapshot` as well (an AMI
    registered from another AMI's snapshot): moto ignores RegisterImage's block device
    mappings and gives every image a fresh snapshot, so the sharing is added to its answers."""

    def add(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):
            if image["ImageId"] == image_id:
                image["BlockDeviceMappings"].append(
                    {"DeviceName": "/dev/sdb", "Ebs": {"SnapshotId": snapshot}}
                )

    def session_for(_profile: str | None = None) -> AwsSession:
        made = session()
        made.events.register("after-call.ec2.DescribeImages", add)
        return made

    return session_for


def test_a_snapshot_another_ami_uses_stays(moto, catalog, tmp_path):
    spec = spec_file(tmp_path, "{keep: 1}")
    old_ami, (snap,) = seed_ami(SOURCE_REGION, "web-old")
    record_build(catalog, "b1", 10, spec, {SOURCE_REGION: (old_ami, [snap])})
    other, _ = seed_ami(SOURCE_REGION, "hand-made")  # not imgpipe's: made from b1's snapshot
    ami_build(catalog, "b2", 1, spec)

    report = prune(catalog, ["web"], session_for=sharing(other, snap))

    assert report.removed() == ["b1"] and report.failures == []
    assert not exists(SOURCE_REGION, old_ami)
    assert exists(SOURCE_REGION, other) and snapshot_exists(SOURCE_REGION, snap)
    (b1,) = [b for p in report.specs for b in p.builds if b.build_id == "b1"]
    assert f"snapshot {snap} in {SOURCE_REGION} stays: AMI {other} still uses it" in b1.notes
    assert catalog.get("b1").pruned_at is not None  # type: ignore[union-attr]


def test_a_snapshot_two_pruned_amis_share_goes_with_the_last(moto, catalog, tmp_path):
    spec = spec_file(tmp_path, "{keep: 1}")
    first, (snap,) = seed_ami(SOURCE_REGION, "web-1")
    record_build(catalog, "b1", 10, spec, {SOURCE_REGION: (first, [snap])})
    second, (own,) = seed_ami(SOURCE_REGION, "web-2")
    record_build(catalog, "b2", 9, spec, {SOURCE_REGION: (second, [own, snap])})
    ami_build(catalog, "b3", 1, spec)

    report = prune(catalog, ["web"], session_for=sharing(second, snap))

    assert sorted(report.removed()) == ["b1", "b2"] and report.failures == []
    plan = {b.build_id: b for p in report.specs for b in p.builds}
    assert (
        f"snapshot {snap} in {SOURCE_REGION}: deleted with a later build it is shared with"
        in plan["b1"].notes
    )
    assert not exists(SOURCE_REGION, first) and not exists(SOURCE_REGION, second)
    assert not snapshot_exists(SOURCE_REGION, snap) and not snapshot_exists(SOURCE_REGION, own)


def moto_state() -> dict[str, Any]:
    """Everything of moto's a prune could touch, in every region."""
    state: dict[str, Any] = {}
    for region in ALL_REGIONS:
        ec2, ssm = plain("ec2", region), plain("ssm", region)
        images = sorted(ec2.describe_images(Owners=["self"])["Images"], key=lambda i: i["ImageId"])
        state[f"{region} images"] = images
        state[f"{region} permissions"] = [
            ec2.describe_image_attribute(ImageId=i["ImageId"], Attribute="launchPermission")[
                "LaunchPermissions"
            ]
            for i in images
        ]
        state[f"{region} snapshots"] = sorted(
            ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"], key=lambda s: s["SnapshotId"]
        )
        state[f"{region} instances"] = [
            (i["InstanceId"], i["ImageId"], i["State"]["Name"])
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
        ]
        templates = ec2.describe_launch_templates()["LaunchTemplates"]
        state[f"{region} templates"] = [
            (t, ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"]))
            for t in templates
        ]
        names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
        state[f"{region} parameters"] = [
            ssm.get_parameter(Name=n)["Parameter"] | {"LastModifiedDate": None} for n in names
        ]
    for entries in state.values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict):
                entry[1].pop("ResponseMetadata", None)
    return state


def catalog_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    tables = ("build", "target_build", "artifact", "channel", "channel_history", "spec", "lease")
    return {t: sorted(execute(url, f"SELECT * FROM {t}"), key=repr) for t in tables}


def files(root: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(root)): os.readlink(p)
        if p.is_symlink()
        else (p.read_bytes() if p.is_file() else "dir")
        for p in sorted(root.rglob("*"))
    }


def cli(tmp: Path, url: str, *args: str, endpoint: str | None = None, wait: bool = True) -> Any:
    env = {
        **os.environ,
        "IMGPIPE_CATALOG": url,
        "IMGPIPE_STATE_DIR": str(tmp / "state"),
        "IMGPIPE_CACHE_DIR": str(tmp / "cache"),
    }
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    argv = [*IMGPIPE, "prune", *args]
    if not wait:
        return subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_dry_run_changes_nothing_and_says_exactly_what_a_real_run_removes(moto, catalog, tmp_path):
    spec = spec_file(tmp_path, "{keep: 1, max_age_days: 5}")
    out = tmp_path / "out" / "web"
    old = {}
    for n, days in ((1, 30), (2, 20)):
        build_dir = out / f"b{n}"
        (build_dir / "logs").mkdir(parents=True)
        (build_dir / "SHA256SUMS").write_text("x\n")
        old[n] = ami_build(catalog, f"b{n}", days, spec, out=build_dir)
        plain("ec2", SOURCE_REGION).modify_image_attribute(
            ImageId=old[n][SOURCE_REGION], LaunchPermission={"Add": [{"UserId": "123456789012"}]}
        )
    kept = ami_build(catalog, "b3", 1, spec)
    Mover(catalog, session()).promote("web", "b3", "stable")
    url = url_of(catalog)
    before = (moto_state(), catalog_rows(url), files(tmp_path / "out"))

    dry = cli(tmp_path, url, "web", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert (moto_state(), catalog_rows(url), files(tmp_path / "out")) == before
    assert "Traceback" not in dry.stderr
    text = dry.stdout
    printed = {line.strip() for line in text.splitlines()}
    expected = set()
    for n in (1, 2):
        for region, ami in old[n].items():
            expected.add(f"AMI {ami} in {region}: reset launch permissions, deregister")
            for snap in snapshots_of(plain("ec2", region), ami):
                expected.add(f"snapshot {snap} in {region}: delete")
        expected.add(f"directory {out / f'b{n}'} (sums, logs, manifest)")
    assert expected <= printed, text
    assert "would remove b1" in text and "would remove b2" in text and "would remove 2 builds" in text
    assert "channel stable" in text and "newest succeeded build of target ec2" in text

    real = cli(tmp_path, url, "web", "--json")
    assert real.returncode == 0, real.stderr
    import json

    done = json.loads(real.stdout)
    steps = {s for p in done["specs"] for b in p["builds"] if b["action"] == "remove" for s in b["steps"]}
    assert steps == {line for line in expected} | {"its channel history entries in the catalog (0)"}, steps
    assert not any(exists(r, a) for n in (1, 2) for r, a in old[n].items())
    assert all(exists(r, a) for r, a in kept.items())
    assert not (out / "b1").exists() and not (out / "b2").exists()


def test_kill_9_during_a_prune_then_the_next_prune_finishes(moto, aws_proxy, catalog, tmp_path):
    spec = spec_file(tmp_path, "{keep: 1}")
    out = tmp_path / "out" / "web"
    old = {}
    for n, days in ((1, 30), (2, 20)):
        (out / f"b{n}" / "logs").mkdir(parents=True)
        old[n] = ami_build(catalog, f"b{n}", days, spec, out=out / f"b{n}")
    snaps = {(r, s) for n in (1, 2) for r, a in old[n].items() for s in snapshots_of(plain("ec2", r), a)}
    kept = ami_build(catalog, "b3", 1, spec)
    url = url_of(catalog)
    hold = aws_proxy.hold("DeregisterImage", nth=2)

    proc = cli(tmp_path, url, "web", endpoint=aws_proxy.url, wait=False)
    try:
        assert hold.arrived.wait(60), proc.communicate(timeout=5)
        assert not exists(SOURCE_REGION, old[1][SOURCE_REGION])  # the first AMI is gone
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        hold.release()
    assert proc.returncode == -signal.SIGKILL
    (halfway,) = catalog.pruning_builds()
    assert halfway.id == "b1" and halfway.pruned_at is None
    assert exists(SOURCE_REGION, old[2][SOURCE_REGION])  # not started

    second = cli(tmp_path, url, "web")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "b1: finishing an interrupted prune" in second.stderr
    assert not any(exists(r, a) for n in (1, 2) for r, a in old[n].items())
    assert not any(snapshot_exists(r, s) for r, s in snaps)
    assert all(exists(r, a) for r, a in kept.items())
    assert not (out / "b1").exists() and not (out / "b2").exists()
    assert catalog.pruning_builds() == []
    assert all(catalog.get(b).pruned_at is not None for b in ("b1", "b2"))  # type: ignore[union-attr]


def test_deprecate_first_then_delete(moto, catalog, tmp_path):
    from tests.aws.conftest import request_region

    spec = spec_file(tmp_path, "{keep: 1, max_age_days: 10, deprecate_after_days: 5}")
    old = ami_build(catalog, "b1", 20, spec)
    young = ami_build(catalog, "b2", 7, spec)  # out of the window, not expired: only deprecated
    ami_build(catalog, "b3", 1, spec)
    calls: list[tuple[str, str]] = []

    def deprecating(profile: str | None = None) -> AwsSession:
        made = session(profile)

        def answer(request: Any, **_: Any) -> Any:  # moto has no EnableImageDeprecation
            from urllib.parse import parse_qs

            from botocore.awsrequest import AWSResponse

            params = parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body)
            calls.append((request_region(request), params["ImageId"][0]))
            body = (
                b'<EnableImageDeprecationResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                b"<requestId>x</requestId><return>true</return></EnableImageDeprecationResponse>"
            )

            class Raw:
                def stream(self, **_: Any) -> Iterator[bytes]:
                    yield body

            return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, Raw())

        made.events.register("before-send.ec2.EnableImageDeprecation", answer)
        return made

    dry = prune(catalog, ["web"], session_for=deprecating, dry_run=True)
    plan = {b.build_id: b for p in dry.specs for b in p.builds}
    assert plan["b1"].action == "deprecate" and plan["b2"].action == "deprecate"
    assert (
        f"AMI {old[SOURCE_REGION]} in {SOURCE_REGION}: set an EC2 deprecation time"
        in plan["b1"].to_json()["steps"]
    )
    assert calls == [] and catalog.get("b1").deprecated_at is None  # type: ignore[union-attr]

    first = prune(catalog, ["web"], session_for=deprecating)

    assert first.failures == [] and first.removed() == []
    assert sorted(calls) == sorted([*((r, a) for r, a in old.items()), *((r, a) for r, a in young.items())])
    assert all(exists(r, a) for r, a in [*old.items(), *young.items()])
    assert catalog.get("b1").deprecated_at is not None  # type: ignore[union-attr]
    assert catalog.get("b3").deprecated_at is None  # type: ignore[union-attr]

    calls.clear()
    second = prune(catalog, ["web"], session_for=deprecating, now=datetime.now(UTC) + timedelta(minutes=5))

    assert second.failures == [] and second.removed() == ["b1"]
    assert calls == []  # deprecated once
    assert not any(exists(r, a) for r, a in old.items())
    assert all(exists(r, a) for r, a in young.items())


def test_when_ec2_cannot_say_what_is_in_use_nothing_is_removed(moto, catalog, tmp_path):
    from tests.aws.conftest import inject

    spec = spec_file(tmp_path, "{keep: 1}")
    old = ami_build(catalog, "b1", 10, spec)
    ami_build(catalog, "b2", 1, spec)
    denied = session()
    inject(denied, "ec2", "DescribeInstances", region="eu-west-1")

    report = prune(catalog, ["web"], session_for=lambda _profile: denied)

    assert report.removed() == [] and report.specs == []
    (failure,) = report.failures
    assert "could not ask EC2 which AMIs are in use (UnauthorizedOperation" in failure
    assert all(exists(r, a) for r, a in old.items())
    assert catalog.get("b1").pruned_at is None  # type: ignore[union-attr]
