"""Channels of AMI builds against the moto server: a channel is an SSM parameter per region
of the build's AMIs; a move that fails in one region puts every other region back, and
the catalog keeps the history AWS does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgpipe.aws import AwsSession, AwsSettings
from imgpipe.catalog import Catalog, open_catalog
from imgpipe.channels import Mover
from imgpipe.errors import PublishError
from tests.aws.conftest import SOURCE_REGION, inject, plain, seed_ami
from tests.aws.recorded import record_ami_build

REGIONS = (SOURCE_REGION, "eu-west-1")
PARAM = "/images/web/stable"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as cat:
        cat.claim_spec("web", "ci:/specs/web.yml")
        yield cat


def ami_build(catalog: Catalog, build_id: str, status: str = "succeeded") -> dict[str, str]:
    """A recorded build of target `ec2` whose AMI exists in both regions; its AMI per region."""
    images = {region: seed_ami(region, f"web-{build_id}") for region in REGIONS}
    return record_ami_build(catalog, build_id, images, status=status)


def ssm_values() -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for region in REGIONS:
        try:
            values[region] = plain("ssm", region).get_parameter(Name=PARAM)["Parameter"]["Value"]
        except plain("ssm", region).exceptions.ParameterNotFound:
            values[region] = None
    return values


def test_a_channel_is_an_ssm_parameter_per_region(moto, catalog):
    first = ami_build(catalog, "b1")
    result = Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION))).promote("web", "b1", "stable")
    assert ssm_values() == first
    assert {(p["region"], p["name"], p["after"]) for p in result.places} == {
        (r, PARAM, ami) for r, ami in first.items()
    }
    param = plain("ssm", "eu-west-1").get_parameter(Name=PARAM)["Parameter"]
    assert param["DataType"] == "aws:ec2:image"  # launch templates resolve it as an AMI
    second = ami_build(catalog, "b2")
    Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION))).promote("web", "b2", "stable")
    assert ssm_values() == second
    view = catalog.channel("web", "stable")
    assert view is not None and view.build_id == "b2" and view.pending is None
    assert [(m.from_build, m.to_build, m.outcome) for m in catalog.channel_history("web")] == [
        ("b1", "b2", "moved"),
        (None, "b1", "moved"),
    ]


def test_a_failure_in_the_second_region_rolls_the_first_back(moto, catalog):
    first = ami_build(catalog, "b1")
    Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION))).promote("web", "b1", "stable")
    ami_build(catalog, "b2")

    session = AwsSession(AwsSettings(region=SOURCE_REGION))
    puts = inject(
        session, "ssm", "PutParameter", region="eu-west-1", code="AccessDeniedException", status=400
    )
    with pytest.raises(PublishError) as caught:
        Mover(catalog, session).promote("web", "b2", "stable")
    assert puts() >= 1
    message = str(caught.value)
    assert "AccessDeniedException" in message and "eu-west-1" in message, message
    assert "every place points at b1 again" in message
    assert ssm_values() == first
    # us-east-1 was moved to b2 (version 2), then put back (version 3)
    assert plain("ssm", SOURCE_REGION).get_parameter(Name=PARAM)["Parameter"]["Version"] == 3
    view = catalog.channel("web", "stable")
    assert view is not None and view.build_id == "b1" and view.pending is None
    latest = catalog.channel_history("web")[0]
    assert (latest.from_build, latest.to_build, latest.outcome) == ("b1", "b2", "rolled back")
    assert latest.detail and "AccessDeniedException" in latest.detail


def test_a_first_move_that_fails_leaves_no_parameter(moto, catalog):
    ami_build(catalog, "b1")
    session = AwsSession(AwsSettings(region=SOURCE_REGION))
    inject(session, "ssm", "PutParameter", region="eu-west-1", code="AccessDeniedException", status=400)
    with pytest.raises(PublishError):
        Mover(catalog, session).promote("web", "b1", "stable")
    assert ssm_values() == {region: None for region in REGIONS}
    assert catalog.channel("web", "stable") is None
    assert [m.outcome for m in catalog.channel_history("web")] == ["rolled back"]


def test_a_failed_build_is_not_promoted(moto, catalog):
    from imgpipe.errors import SpecError

    ami_build(catalog, "b1", status="failed")
    with pytest.raises(SpecError, match="only a succeeded build can be promoted"):
        Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION))).promote("web", "b1", "stable")
    assert ssm_values() == {region: None for region in REGIONS}


def test_a_region_that_refuses_the_undo_too_is_put_back_by_the_next_command(moto, catalog):
    """The second region refuses the move and the first refuses to be put back: the move
    stays journaled, and once its process is gone the next command reverts it."""
    import json

    from tests.catalog.conftest import execute

    first = ami_build(catalog, "b1")
    Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION))).promote("web", "b1", "stable")
    second = ami_build(catalog, "b2")
    session = AwsSession(AwsSettings(region=SOURCE_REGION))
    denied = {"code": "AccessDeniedException", "status": 400}
    inject(session, "ssm", "PutParameter", region="eu-west-1", **denied)  # type: ignore[arg-type]
    inject(session, "ssm", "PutParameter", region=SOURCE_REGION, nth=2, **denied)  # type: ignore[arg-type]
    with pytest.raises(PublishError, match="could not put back"):
        Mover(catalog, session).promote("web", "b2", "stable")
    assert ssm_values() == {SOURCE_REGION: second[SOURCE_REGION], "eu-west-1": first["eu-west-1"]}
    view = catalog.channel("web", "stable")
    assert view is not None and view.build_id == "b1" and view.pending and view.pending["to"] == "b2"

    url = f"sqlite:///{catalog.url_masked.removeprefix('sqlite:///')}"
    ((pending,),) = execute(url, "SELECT pending FROM channel WHERE channel = 'stable'")
    move = json.loads(pending) if isinstance(pending, str) else pending
    move["owner"]["pid_start"] = "1"  # its process is gone (kill -9)
    execute(url, "UPDATE channel SET pending = :p WHERE channel = 'stable'", p=json.dumps(move))
    done = Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION))).recover("web")
    assert done == ["stable: reverted the interrupted move to b2 (back at b1)"]
    assert ssm_values() == first
    assert [m.outcome for m in catalog.channel_history("web")][:2] == ["reverted", "moved"]


def test_a_dry_run_promote_reads_and_changes_nothing(moto, catalog):
    first = ami_build(catalog, "b1")
    mover = Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION)))
    mover.promote("web", "b1", "stable")
    second = ami_build(catalog, "b2")
    history = catalog.channel_history("web")
    result = mover.promote("web", "b2", "stable", dry_run=True)
    assert result.dry_run and result.previous == "b1" and not result.unchanged
    assert {p["region"]: (p["before"]["Value"], p["after"]) for p in result.places} == {
        r: (first[r], second[r]) for r in REGIONS
    }
    assert ssm_values() == first  # nothing moved anywhere
    assert catalog.channel("web", "stable").build_id == "b1"
    assert catalog.channel_history("web") == history


def test_a_publishers_ssm_parameter_is_the_latest_channels_pointer(moto, catalog):
    """One writer per parameter: the AMI publisher's `ssm_parameter` is where `latest` shows
    the build, instead of a second parameter from the channels template."""
    images = ami_build(catalog, "b1")
    catalog.start_build("b2", "web", "/specs/web.yml", ["ec2"], imgpipe_version="0", ansible_core="0")
    mine = "/team/web/current"
    record = {
        "artifact_id": ",".join(f"{r}:{ami}" for r, ami in images.items()),
        "data": {"images": [], "profile": None},
        "published": [
            {
                "publisher": "amis",
                "data": {
                    "images": [
                        {"region": r, "image_id": ami, "snapshot_ids": []} for r, ami in images.items()
                    ],
                    "ssm_parameter": mine,
                },
            }
        ],
        "channels": {"ssm_parameter": "/images/{name}/{channel}"},
    }
    catalog.finish_target(
        "b2",
        "ec2",
        status="succeeded",
        fingerprint=None,
        fingerprint_parts={},
        publish_fingerprint=None,
        record=record,
    )
    catalog.finish_build("b2", "succeeded")
    mover = Mover(catalog, AwsSession(AwsSettings(region=SOURCE_REGION)))
    latest = mover.promote("web", "b2", "latest")
    assert {p["name"] for p in latest.places} == {mine}
    assert plain("ssm", "eu-west-1").get_parameter(Name=mine)["Parameter"]["Value"] == images["eu-west-1"]
    stable = mover.promote("web", "b2", "stable")  # any other channel keeps the template
    assert {p["name"] for p in stable.places} == {PARAM}


def test_a_place_carries_the_profile_its_image_was_made_with(catalog):
    from imgpipe.channels import places_for

    catalog.start_build("b3", "web", "/specs/web.yml", ["ec2"], imgpipe_version="0", ansible_core="0")
    image = {"region": "eu-west-1", "image_id": "ami-0123456789abcdef0", "snapshot_ids": []}
    record = {"data": {"images": [image], "profile": "images-prod"}, "channels": {}}
    catalog.finish_target(
        "b3",
        "ec2",
        status="succeeded",
        fingerprint=None,
        fingerprint_parts={},
        publish_fingerprint=None,
        record=record,
    )
    catalog.finish_build("b3", "succeeded")
    [place] = places_for(catalog.get("b3"), "stable")
    assert place["profile"] == "images-prod" and place["region"] == "eu-west-1"


def test_kill_9_mid_move_then_the_next_command_puts_every_region_back(moto, aws_proxy, tmp_path):
    """A real `imgpipe promote` killed (SIGKILL) after the first region took the new value:
    `imgpipe channels`, the next command that touches the channel, reverts it everywhere."""
    import os
    import signal
    import subprocess

    from tests.conftest import IMGPIPE, REPO

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    with open_catalog(url) as cat:
        cat.claim_spec("web", "ci:/specs/web.yml")
        first = ami_build(cat, "b1")
        Mover(cat, AwsSession(AwsSettings(region=SOURCE_REGION))).promote("web", "b1", "stable")
        second = ami_build(cat, "b2")
    env = {
        **os.environ,
        "IMGPIPE_CATALOG": url,
        "IMGPIPE_STATE_DIR": str(tmp_path / "state"),
        "AWS_ENDPOINT_URL": aws_proxy.url,
    }
    hold = aws_proxy.hold("PutParameter", nth=2)  # the second region's write
    promote = subprocess.Popen(
        [*IMGPIPE, "promote", "web", "b2", "--channel", "stable"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert hold.arrived.wait(60), promote.communicate(timeout=5)
        assert sorted(ssm_values().values()) == sorted([second[REGIONS[0]], first[REGIONS[1]]])  # halfway
        os.kill(promote.pid, signal.SIGKILL)
        promote.communicate(timeout=30)
    finally:
        if promote.poll() is None:
            promote.kill()
        hold.release()
    assert promote.returncode == -signal.SIGKILL

    listed = subprocess.run(
        [*IMGPIPE, "channels", "web"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "stable: reverted the interrupted move to b2 (back at b1)" in listed.stderr
    assert ssm_values() == first  # every region back at the old build
    with open_catalog(url) as cat:
        view = cat.channel("web", "stable")
        assert view is not None and view.build_id == "b1" and view.pending is None
        assert cat.channel_history("web", "stable")[0].outcome == "reverted"
