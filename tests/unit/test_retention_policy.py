"""The retention policy alone: builds fabricated as the catalog hands them out, facts as
EC2 and the catalog would give them; each rule decides a build's fate and says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imgpipe.catalog.models import Status
from imgpipe.catalog.views import ArtifactView, BuildView, TargetBuildView
from imgpipe.retention.policy import Action, Child, Facts, decide, images_of
from imgpipe.spec.model import Retention

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def build(
    n: int,
    days_old: float,
    status: Status = Status.SUCCEEDED,
    *,
    targets: tuple[str, ...] = ("ec2",),
    ami: bool = True,
    revoked: bool = False,
    deprecated_days_ago: float | None = None,
    pruned: bool = False,
) -> BuildView:
    started = NOW - timedelta(days=days_old)
    views = tuple(
        TargetBuildView(
            build_id=f"b{n}",
            spec_name="web",
            target=t,
            status=status,
            started_at=started,
            finished_at=started,
            fingerprint=None,
            fingerprint_parts={},
            publish_fingerprint=None,
            artifact_id=None,
            record={},
            artifacts=(
                ArtifactView("ami", f"ami-{n}{t}", "us-east-1", {"snapshot_ids": [f"snap-{n}{t}"]}),
                ArtifactView("ami", f"ami-{n}{t}", "us-east-1", {"snapshot_ids": [], "profile": "prod"}),
            )
            if ami and status is Status.SUCCEEDED
            else (),
        )
        for t in targets
    )
    return BuildView(
        id=f"b{n}",
        spec_name="web",
        spec_path="/specs/web.yml",
        status=status,
        started_at=started,
        finished_at=started,
        imgpipe_version="0",
        ansible_core="0",
        owner_host="here",
        owner_pid=1,
        targets=views,
        revoked_at=started if revoked else None,
        deprecated_at=NOW - timedelta(days=deprecated_days_ago) if deprecated_days_ago is not None else None,
        pruned_at=started if pruned else None,
    )


def fates(builds, retention, **facts) -> dict[str, Action]:
    return {d.build_id: d.action for d in decide(builds, retention, Facts(now=NOW, **facts))}


def reasons(builds, retention, build_id, **facts) -> str:
    return next(d.why() for d in decide(builds, retention, Facts(now=NOW, **facts)) if d.build_id == build_id)


def test_keep_n_newest_and_remove_the_rest_without_max_age():
    builds = [build(i, 10 - i) for i in range(1, 6)]  # b5 newest
    assert fates(builds, Retention(keep=2)) == {
        "b5": Action.KEEP,
        "b4": Action.KEEP,
        "b3": Action.REMOVE,
        "b2": Action.REMOVE,
        "b1": Action.REMOVE,
    }
    assert "among the 2 newest" in reasons(builds, Retention(keep=2), "b4")
    assert "newest succeeded build of target ec2" in reasons(builds, Retention(keep=2), "b5")


def test_max_age_keeps_young_builds_beyond_the_window():
    builds = [build(1, 40), build(2, 20), build(3, 2), build(4, 1)]
    assert fates(builds, Retention(keep=2, max_age_days=30)) == {
        "b4": Action.KEEP,
        "b3": Action.KEEP,
        "b2": Action.KEEP,
        "b1": Action.REMOVE,
    }
    assert "not older than max_age_days (30)" in reasons(builds, Retention(keep=2, max_age_days=30), "b2")


def test_fewer_succeeded_builds_than_keep_removes_nothing():
    builds = [build(1, 100, Status.FAILED), build(2, 90)]
    assert set(fates(builds, Retention(keep=3)).values()) == {Action.KEEP}


def test_failed_builds_go_once_out_of_the_window_and_take_no_place_in_it():
    builds = [
        build(1, 9, Status.FAILED),
        build(2, 8),
        build(3, 5, Status.ABANDONED),
        build(4, 4),
        build(5, 3),
    ]
    got = fates(builds, Retention(keep=2))
    assert got == {
        "b5": Action.KEEP,
        "b4": Action.KEEP,
        "b3": Action.REMOVE,  # older than b4, the oldest of the 2 newest
        "b2": Action.REMOVE,
        "b1": Action.REMOVE,
    }
    assert "abandoned" in reasons(builds, Retention(keep=2), "b3")
    newer_failure = [*builds, build(6, 3.5, Status.FAILED)]  # newer than b4: in the window
    assert fates(newer_failure, Retention(keep=2))["b6"] is Action.KEEP


def test_running_and_pruned_builds():
    builds = [build(1, 50, Status.RUNNING), build(2, 40, pruned=True), build(3, 2), build(4, 1)]
    got = fates(builds, Retention(keep=1))
    assert "b2" not in got  # already pruned: not decided again
    assert got["b1"] is Action.KEEP and "running" in reasons(builds, Retention(keep=1), "b1")
    assert got["b3"] is Action.REMOVE


def test_channels_in_use_keep_tags_and_live_prunes_protect():
    builds = [build(i, 10 - i) for i in range(1, 8)]
    got = fates(
        builds,
        Retention(keep=1),
        channels={"b1": ["stable"], "b2": ["beta (a move to it is pending)"]},
        in_use={"ami-3ec2": "instance i-1 (stopped) in us-east-1"},
        keep_tagged={"snap-4ec2": "imgpipe:keep=true"},
        busy={"b5": "being pruned by process 7 on h"},
    )
    assert [b for b, a in sorted(got.items()) if a is Action.REMOVE] == ["b6"]
    why = reasons(builds, Retention(keep=1), "b3", in_use={"ami-3ec2": "instance i-1 (stopped) in us-east-1"})
    assert "AMI ami-3ec2 in us-east-1 is used by instance i-1 (stopped)" in why


def test_newest_succeeded_build_of_each_target_stays():
    builds = [
        build(1, 5, targets=("ec2", "local")),
        build(2, 4, targets=("ec2",)),
        build(3, 3, targets=("ec2",)),
    ]
    got = fates(builds, Retention(keep=1))
    assert got == {"b3": Action.KEEP, "b2": Action.REMOVE, "b1": Action.KEEP}
    assert "newest succeeded build of target local" in reasons(builds, Retention(keep=1), "b1")


def test_a_revoked_build_is_not_the_newest_of_its_target_nor_in_the_count():
    builds = [build(1, 5), build(2, 4), build(3, 3, revoked=True)]
    got = fates(builds, Retention(keep=1))
    assert got == {"b3": Action.KEEP, "b2": Action.KEEP, "b1": Action.REMOVE}
    assert "newer than the oldest" in reasons(builds, Retention(keep=1), "b3")
    old_revoked = [build(1, 5, revoked=True), build(2, 4)]
    assert fates(old_revoked, Retention(keep=1))["b1"] is Action.REMOVE
    assert "revoked" in reasons(old_revoked, Retention(keep=1), "b1")


def test_a_parent_of_a_kept_build_stays_transitively():
    builds = [build(i, 10 - i) for i in range(1, 6)]
    children = {
        "b1": [Child("b2", "web", pruned=False)],  # b2 is a parent of b3
        "b2": [Child("b3", "web", pruned=False)],
        "b3": [Child("c9", "app", pruned=False)],  # another spec's child stays
    }
    got = fates(builds, Retention(keep=1), children=children)
    assert got == {
        "b5": Action.KEEP,
        "b4": Action.REMOVE,
        "b3": Action.KEEP,
        "b2": Action.KEEP,
        "b1": Action.KEEP,
    }
    assert "parent of kept build app c9" in reasons(builds, Retention(keep=1), "b3", children=children)


def test_a_parent_whose_children_all_go_goes_too():
    builds = [build(i, 10 - i) for i in range(1, 5)]
    children = {"b1": [Child("b2", "web", pruned=False)], "b2": [Child("x", "app", pruned=True)]}
    got = fates(builds, Retention(keep=1), children=children)
    assert got["b1"] is Action.REMOVE and got["b2"] is Action.REMOVE


def test_deprecate_first_then_delete_by_a_later_run():
    policy = Retention(keep=1, max_age_days=10, deprecate_after_days=5)
    builds = [build(1, 20), build(2, 7), build(3, 3), build(4, 1)]
    got = fates(builds, policy)
    # b1 expired but never deprecated: deprecated now, deleted later; b2 only deprecated
    assert got == {"b4": Action.KEEP, "b3": Action.KEEP, "b2": Action.DEPRECATE, "b1": Action.DEPRECATE}
    assert "a later prune deletes them" in reasons(builds, policy, "b1")
    later = [
        build(1, 21, deprecated_days_ago=1),
        build(2, 8, deprecated_days_ago=1),
        build(3, 3),
        build(4, 1),
    ]
    assert fates(later, policy) == {
        "b4": Action.KEEP,
        "b3": Action.KEEP,
        "b2": Action.KEEP,
        "b1": Action.REMOVE,
    }
    assert "deprecated 2026-11-26" in reasons(later, policy, "b1")


def test_deprecation_waits_for_its_age_and_spares_builds_without_amis():
    policy = Retention(keep=1, deprecate_after_days=30)
    builds = [build(1, 10), build(2, 9, ami=False), build(3, 1)]
    got = fates(builds, policy)
    assert got == {"b3": Action.KEEP, "b2": Action.REMOVE, "b1": Action.KEEP}
    assert "only after deprecation (at 30 days)" in reasons(builds, policy, "b1")


def test_protected_builds_are_never_deprecated():
    policy = Retention(keep=1, deprecate_after_days=1)
    builds = [build(1, 10), build(2, 1)]
    assert fates(builds, policy, channels={"b1": ["stable"]})["b1"] is Action.KEEP


def test_images_of_merges_a_region_image_recorded_twice():
    (image,) = images_of(build(1, 1))
    assert (image.region, image.image_id, image.snapshot_ids, image.profile, image.target) == (
        "us-east-1",
        "ami-1ec2",
        ("snap-1ec2",),
        "prod",
        "ec2",
    )


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_positive(keep):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Retention(keep=keep)


def test_retention_is_not_a_fingerprint_input(tmp_path):
    """Changing how long images are kept never makes an image stale."""
    from imgpipe.fingerprint import _spec_part
    from imgpipe.spec import load_spec

    base = "imgpipe: 1\nname: web\n{extra}targets:\n  local: {{builder: libvirt}}\n"
    plain_spec = tmp_path / "a.yml"
    plain_spec.write_text(base.format(extra=""))
    kept = tmp_path / "b.yml"
    kept.write_text(base.format(extra="retention: {keep: 2, max_age_days: 9, deprecate_after_days: 3}\n"))
    loaded = load_spec(kept)
    assert loaded.spec.retention == Retention(keep=2, max_age_days=9, deprecate_after_days=3)
    assert _spec_part(loaded) == _spec_part(load_spec(plain_spec))
