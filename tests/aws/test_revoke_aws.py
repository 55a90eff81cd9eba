"""Revocation of AMI builds against the moto server, across two regions: the channels
pointing at the revoked build roll back to the previous good build in every region (or
stay everywhere when a region refuses), its AMIs are tagged revoked, descendants follow
with --descendants, and a dry run changes nothing in moto or in the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from imgpipe.aws import AwsSession, AwsSettings
from imgpipe.catalog import Catalog, open_catalog
from imgpipe.channels import Mover
from imgpipe.errors import SpecError
from imgpipe.revoke import revoke
from tests.aws.conftest import SOURCE_REGION, inject, plain, seed_ami, tags
from tests.aws.recorded import record_ami_build

REGIONS = (SOURCE_REGION, "eu-west-1")
PARAM = "/images/web/stable"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as cat:
        for name in ("web", "app", "edge"):
            cat.claim_spec(name, f"ci:/specs/{name}.yml")
        yield cat


def session() -> AwsSession:
    return AwsSession(AwsSettings(region=SOURCE_REGION))


def ami_build(
    catalog: Catalog,
    build_id: str,
    spec: str = "web",
    status: str = "succeeded",
    parent: str | None = None,
) -> dict[str, str]:
    """A recorded build of target `ec2` whose AMI exists in both regions (made from
    `parent`'s image when given); its AMI per region."""
    images = {region: seed_ami(region, f"{spec}-{build_id}") for region in REGIONS}
    made_from = (parent, f"{parent}@stable") if parent else None
    return record_ami_build(catalog, build_id, images, spec=spec, status=status, parent=made_from)


def ssm_values(param: str = PARAM) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for region in REGIONS:
        try:
            values[region] = plain("ssm", region).get_parameter(Name=param)["Parameter"]["Value"]
        except plain("ssm", region).exceptions.ParameterNotFound:
            values[region] = None
    return values


def promote(catalog: Catalog, spec: str, build_id: str, channel: str = "stable") -> None:
    Mover(catalog, session()).promote(spec, build_id, channel)


def image(region: str, image_id: str) -> dict[str, Any]:
    return plain("ec2", region).describe_images(ImageIds=[image_id])["Images"][0]  # type: ignore[no-any-return]


def test_revoke_rolls_stable_back_in_every_region_and_tags_the_amis(moto, catalog):
    a = ami_build(catalog, "A")
    promote(catalog, "web", "A")
    b = ami_build(catalog, "B")
    promote(catalog, "web", "B")
    assert ssm_values() == b

    result = revoke(catalog, "B", "CVE-2026-0001 in openssl", by="sec@host", aws=session())

    assert result.ok, result.problems
    assert ssm_values() == a  # both regions back at A
    view = catalog.channel("web", "stable")
    assert view is not None and view.build_id == "A" and view.pending is None
    latest = catalog.channel_history("web", "stable")[0]
    assert (latest.from_build, latest.to_build, latest.outcome) == ("B", "A", "moved")
    for region, ami in b.items():
        assert tags(plain("ec2", region), ami) == {
            "imgpipe:revoked": "true",
            "imgpipe:revoked-reason": "CVE-2026-0001 in openssl",
        }
    for region, ami in a.items():
        assert "imgpipe:revoked" not in tags(plain("ec2", region), ami)
    # moto 5.2 has no EnableImageDeprecation: the AMIs are tagged, the refusal is a warning
    marks = [o for o in result.outcomes if o.action.step.value == "mark AMI"]
    assert len(marks) == 2 and all(o.status == "warning" for o in marks), marks
    assert all("refused a deprecation time" in o.detail for o in marks)
    revoked = catalog.get("B")
    assert revoked is not None and revoked.revoked_reason == "CVE-2026-0001 in openssl"
    assert revoked.revoked_by == "sec@host" and not revoked.usable and revoked.deprecated_at is None

    with pytest.raises(SpecError, match="revoked"):
        promote(catalog, "web", "B")
    assert ssm_values() == a


def test_the_amis_get_a_deprecation_time_where_ec2_has_the_call(moto, catalog):
    """moto lacks EnableImageDeprecation: the call is answered here the way EC2 answers it,
    and what imgpipe asked for is checked: a whole minute, in the near future."""
    from botocore.awsrequest import AWSResponse

    b = ami_build(catalog, "B")
    gone_region = "eu-west-1"
    plain("ec2", gone_region).deregister_image(ImageId=b[gone_region])  # gone already: no error
    asked: list[dict[str, list[str]]] = []

    class Raw:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def stream(self, **_: Any) -> Iterator[bytes]:
            yield self.data

    def answer(request: Any, **_: Any) -> Any:
        asked.append(parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body))
        body = b"<EnableImageDeprecationResponse><return>true</return></EnableImageDeprecationResponse>"
        return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, Raw(body))

    aws = session()
    aws.events.register("before-send.ec2.EnableImageDeprecation", answer)
    before = datetime.now(UTC)
    result = revoke(catalog, "B", "bad", by="sec@host", aws=aws)

    assert result.ok, result.problems
    (call,) = asked
    assert call["ImageId"] == [b[SOURCE_REGION]]
    at = datetime.fromisoformat(call["DeprecateAt"][0].replace("Z", "+00:00"))
    assert at.second == 0 and at.microsecond == 0
    assert before < at <= before + timedelta(minutes=2)
    statuses = {o.action.subject: (o.status, o.detail) for o in result.outcomes}
    assert statuses[f"AMI {b[gone_region]} in {gone_region}"] == ("skipped", "gone already")
    assert statuses[f"AMI {b[SOURCE_REGION]} in {SOURCE_REGION}"][0] == "done"
    assert tags(plain("ec2", SOURCE_REGION), b[SOURCE_REGION])["imgpipe:revoked"] == "true"
    build = catalog.get("B")
    assert build is not None and build.deprecated_at is not None


def test_a_failure_in_the_second_region_leaves_stable_at_the_revoked_build_everywhere(
    moto, catalog, monkeypatch
):
    from typer.testing import CliRunner

    from imgpipe.cli import app

    a = ami_build(catalog, "A")
    promote(catalog, "web", "A")
    b = ami_build(catalog, "B")
    promote(catalog, "web", "B")
    aws = session()
    puts = inject(aws, "ssm", "PutParameter", region="eu-west-1", code="AccessDeniedException", status=400)
    monkeypatch.setattr("imgpipe.revoke._new_session", lambda profile: aws)
    url = f"sqlite:///{catalog.url_masked.removeprefix('sqlite:///')}"

    done = CliRunner().invoke(app, ["revoke", "B", "--reason", "bad", "--catalog", url])

    assert puts() >= 1
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    assert "AccessDeniedException" in done.output and "every place points at B again" in done.output
    assert "could not be done" in done.output
    assert ssm_values() == b  # us-east-1 was put back: stable is B everywhere
    view = catalog.channel("web", "stable")
    assert view is not None and view.build_id == "B" and view.pending is None
    build = catalog.get("B")
    assert build is not None and build.revoked_at is not None  # revoked all the same

    # the cause fixed, revoking again finishes the job (the first reason stays)
    monkeypatch.setattr("imgpipe.revoke._new_session", lambda profile: session())
    again = CliRunner().invoke(app, ["revoke", "B", "--reason", "other", "--catalog", url])
    assert again.exit_code == 0, again.output
    assert ssm_values() == a
    build = catalog.get("B")
    assert build is not None and build.revoked_reason == "bad"


def test_descendants_are_revoked_only_with_the_flag(moto, catalog):
    ami_build(catalog, "A")
    older = ami_build(catalog, "C0", spec="app")  # not made from A
    child = ami_build(catalog, "C", spec="app", parent="A")
    promote(catalog, "app", "C0")
    promote(catalog, "app", "C")
    grandchild = ami_build(catalog, "G", spec="edge", parent="C")
    ami_build(catalog, "other", spec="edge")  # not made from A

    alone = revoke(catalog, "A", "leaked key", by="sec@host", aws=session())
    assert alone.ok, alone.problems
    assert [b for b in ("A", "C0", "C", "G", "other") if catalog.get(b).revoked_at] == ["A"]  # type: ignore[union-attr]
    assert ssm_values("/images/app/stable") == child

    result = revoke(catalog, "A", "leaked key", by="sec@host", descendants=True, aws=session())
    assert result.ok, result.problems
    revoked = {b: catalog.get(b) for b in ("A", "C0", "C", "G", "other")}
    assert {b for b, v in revoked.items() if v and v.revoked_at} == {"A", "C", "G"}
    assert revoked["C"].revoked_reason == "parent A revoked: leaked key"  # type: ignore[union-attr]
    assert revoked["G"].revoked_reason == "parent C revoked: leaked key"  # type: ignore[union-attr]
    for region, ami in grandchild.items():
        assert tags(plain("ec2", region), ami)["imgpipe:revoked-reason"] == "parent C revoked: leaked key"
    assert ssm_values("/images/app/stable") == older  # app's stable: back from C to C0
    assert result.to_json()["revoked"] == ["A", "C", "G"]


def test_a_channel_with_no_good_build_left_stays_and_the_revoke_fails(moto, catalog):
    ami_build(catalog, "A", status="failed")
    b = ami_build(catalog, "B")
    promote(catalog, "web", "B")

    result = revoke(catalog, "B", "bad", by="sec@host", aws=session())

    assert not result.ok
    (problem,) = result.problems
    assert problem.startswith("channel stable of web: no good build to roll back to")
    assert "promote a good build" in problem
    assert ssm_values() == b
    for region, ami in b.items():  # the rest is done
        assert tags(plain("ec2", region), ami)["imgpipe:revoked"] == "true"


def test_a_channel_that_never_pointed_at_a_good_build_takes_the_newest_older_one(moto, catalog):
    a = ami_build(catalog, "A")  # never promoted
    ami_build(catalog, "A2", status="failed")
    ami_build(catalog, "B")
    promote(catalog, "web", "B")
    ami_build(catalog, "C")  # newer than B: never a rollback target

    result = revoke(catalog, "B", "bad", by="sec@host", aws=session())

    assert result.ok, result.problems
    assert ssm_values() == a
    (move,) = [o for o in result.outcomes if o.action.step.value == "roll back"]
    assert "newest good build of the spec before it" in move.action.why


def moto_state() -> dict[str, Any]:
    """Everything a revoke could change in moto: images (with tags and deprecation),
    every tag, every SSM parameter with its value and version, per region."""
    state: dict[str, Any] = {}
    for region in REGIONS:
        ec2, ssm = plain("ec2", region), plain("ssm", region)
        names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
        state[region] = {
            "images": sorted(
                (i["ImageId"], i["State"], i.get("DeprecationTime"), sorted(map(str, i.get("Tags", []))))
                for i in ec2.describe_images(Owners=["self"])["Images"]
            ),
            "tags": sorted(map(str, ec2.describe_tags()["Tags"])),
            "ssm": sorted(
                (p["Name"], p["Value"], p["Version"])
                for p in (ssm.get_parameters(Names=names)["Parameters"] if names else [])
            ),
        }
    return state


def catalog_state(catalog: Catalog) -> Any:
    return (
        [catalog.builds(spec) for spec in ("web", "app", "edge")],
        [catalog.channels(spec) for spec in ("web", "app", "edge")],
        [catalog.channel_history(spec) for spec in ("web", "app", "edge")],
    )


def test_a_dry_run_changes_nothing(moto, catalog, tmp_path):
    ami_build(catalog, "A")
    promote(catalog, "web", "A")
    b = ami_build(catalog, "B")
    promote(catalog, "web", "B")
    ami_build(catalog, "C", spec="app", parent="B")
    promote(catalog, "app", "C")
    before = (moto_state(), catalog_state(catalog))

    result = revoke(catalog, "B", "bad", by="sec@host", descendants=True, dry_run=True, aws=session())

    assert (moto_state(), catalog_state(catalog)) == before
    assert result.dry_run and all(o.status == "would" for o in result.outcomes)
    planned = [(o.action.step.value, o.action.subject) for o in result.outcomes]
    assert ("revoke", "build B of web") in planned and ("revoke", "build C of app") in planned
    assert ("roll back", "channel stable of web") in planned
    assert ("leave", "channel stable of app") in planned  # C has no good build before it
    assert {s for k, s in planned if k == "mark AMI"} >= {f"AMI {ami} in {r}" for r, ami in b.items()}
    (back,) = [o for o in result.outcomes if o.action.subject == "channel stable of web"]
    assert back.detail.startswith("B -> A (the build it pointed at before")


def test_a_previous_build_whose_ami_is_gone_is_passed_over(moto, catalog):
    oldest = ami_build(catalog, "A0")
    promote(catalog, "web", "A0")
    a = ami_build(catalog, "A")
    promote(catalog, "web", "A")
    ami_build(catalog, "B")
    promote(catalog, "web", "B")
    plain("ec2", "eu-west-1").deregister_image(ImageId=a["eu-west-1"])  # deleted by hand

    result = revoke(catalog, "B", "bad", by="sec@host", aws=session())

    assert result.ok, result.problems
    assert ssm_values() == oldest


def test_a_running_build_can_be_revoked_and_latest_never_moves_to_it(catalog):
    from imgpipe.channels import move_latest

    catalog.start_build("R", "web", "/specs/web.yml", ["ec2"], imgpipe_version="0", ansible_core="0")

    result = revoke(catalog, "R", "bad base", by="sec@host")

    assert result.ok, result.problems
    assert any("R is still running: revoked" in note for note in result.plan.notes)
    catalog.finish_target(
        "R",
        "ec2",
        status="succeeded",
        fingerprint=None,
        fingerprint_parts={},
        publish_fingerprint=None,
        record={},
    )
    catalog.finish_build("R", "succeeded")
    with pytest.raises(SpecError, match="revoked while it ran: bad base"):
        move_latest(catalog, "R")
    assert catalog.channel("web", "latest") is None
