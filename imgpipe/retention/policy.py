"""Which of a spec's builds retention keeps, deprecates or removes, and why. Pure: it
decides from facts gathered elsewhere (the catalog's builds, channels and child links;
what EC2 says is in use or tagged to be kept), so a dry run and a real run decide alike.

The rules, in the order a build meets them:

1. Never removed (nor deprecated): a running build; a build a channel points at, or that a
   pending channel move comes from or goes to; the newest succeeded, unrevoked build of each
   target; a build with an AMI that an instance (pending, running, stopping, stopped) or
   any launch template version uses; a build with an AMI or snapshot tagged
   `imgpipe:keep=true`; a parent of a build that stays (a child of another spec stays
   while it is not pruned).
2. The keep window: the `keep` newest usable builds (succeeded, not revoked) and every
   build that started after the oldest of them. With fewer usable builds than `keep`,
   every build is in the window. Failed, interrupted and abandoned builds (no images, only
   leftovers such as logs) and revoked builds take no place in the count.
3. Out of the window, a build goes once it is older than `max_age_days` (counted from its
   start); without `max_age_days`, at once.
4. With `deprecate_after_days`, the AMIs of a build out of the window that is older than
   that get an EC2 deprecation time; and a build with AMIs is removed only when an earlier
   prune deprecated them (deprecate first, delete later: accounts we can't see that launch
   it get a warning first). A build without AMIs is removed without that wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from imgpipe.catalog.models import Status

if TYPE_CHECKING:
    from imgpipe.catalog.views import BuildView
    from imgpipe.spec.model import Retention

KEEP_TAG = "imgpipe:keep"


class Action(StrEnum):
    KEEP = "keep"
    DEPRECATE = "deprecate"  # kept, its AMIs given a deprecation time
    REMOVE = "remove"


@dataclass(frozen=True)
class Image:
    """One cloud image of a build in one region, with the AWS profile it was made with."""

    region: str
    image_id: str
    snapshot_ids: tuple[str, ...]
    profile: str | None
    target: str = ""  # the build's target that made it


@dataclass(frozen=True)
class Child:
    """A build made from an image of another build."""

    build_id: str
    spec_name: str
    pruned: bool


@dataclass(frozen=True)
class Facts:
    """What the policy decides from, besides the builds and the policy itself."""

    now: datetime
    channels: Mapping[str, Sequence[str]] = field(default_factory=dict)  # build id -> why (channel names)
    children: Mapping[str, Sequence[Child]] = field(default_factory=dict)  # parent build id -> children
    in_use: Mapping[str, str] = field(default_factory=dict)  # image id -> what uses it
    keep_tagged: Mapping[str, str] = field(default_factory=dict)  # image or snapshot id -> its tag
    busy: Mapping[str, str] = field(default_factory=dict)  # build id -> a live prune of it


@dataclass(frozen=True)
class Decision:
    build_id: str
    action: Action
    reasons: tuple[str, ...]
    images: tuple[Image, ...] = ()
    protected: bool = False  # a "never removed" rule holds

    def why(self) -> str:
        return "; ".join(self.reasons)


def images_of(build: BuildView) -> tuple[Image, ...]:
    """A build's cloud images (each region's once: the builder's AMI and a publisher's copy
    in the same region are one image), with the profile recorded with each."""
    found: dict[tuple[str, str], Image] = {}
    for target in build.targets:
        for a in target.artifacts:
            if not a.region:
                continue
            key = (a.region, a.ref)
            snaps = tuple(
                dict.fromkeys([*(found[key].snapshot_ids if key in found else ()), *_snaps(a.data)])
            )
            profile = a.data.get("profile") or (found[key].profile if key in found else None)
            found[key] = Image(a.region, a.ref, snaps, profile, target.target)
    return tuple(found.values())


def _snaps(data: Mapping[str, object]) -> list[str]:
    value = data.get("snapshot_ids") or []
    return [str(s) for s in value] if isinstance(value, list | tuple) else []


def decide(builds: Iterable[BuildView], retention: Retention, facts: Facts) -> list[Decision]:
    """A decision for each of the builds not yet pruned, newest first."""
    live = sorted(
        (b for b in builds if b.pruned_at is None), key=lambda b: (b.started_at, b.id), reverse=True
    )
    protected = {b.id: _protections(b, live, facts) for b in live}
    usable = [b for b in live if b.usable]
    newest = usable[: retention.keep]
    window_start = newest[-1].started_at if len(newest) == retention.keep else None
    decisions: dict[str, Decision] = {}
    newest_ids = {b.id for b in newest}
    for build in live:
        images = images_of(build)
        if protected[build.id]:
            decisions[build.id] = Decision(build.id, Action.KEEP, tuple(protected[build.id]), images, True)
            continue
        if build.id in newest_ids:
            why = f"among the {retention.keep} newest succeeded builds"
            decisions[build.id] = Decision(build.id, Action.KEEP, (why,), images)
            continue
        if window_start is None or build.started_at >= window_start:
            why = f"newer than the oldest of the {retention.keep} newest succeeded builds"
            if window_start is None:
                why = f"fewer than {retention.keep} succeeded builds exist"
            decisions[build.id] = Decision(build.id, Action.KEEP, (why,), images)
            continue
        decisions[build.id] = _out_of_window(build, images, retention, facts.now)
    _keep_parents(live, decisions, facts)
    return [decisions[b.id] for b in live]


def _protections(build: BuildView, live: list[BuildView], facts: Facts) -> list[str]:
    why: list[str] = []
    if build.status is Status.RUNNING:
        why.append("running")
    if build.id in facts.busy:
        why.append(facts.busy[build.id])
    why += [f"channel {c}" for c in facts.channels.get(build.id, ())]
    for target in build.targets:
        newest = next(
            (b for b in live if b.usable and (t := b.target(target.target)) and t.status is Status.SUCCEEDED),
            None,
        )
        if newest is not None and newest.id == build.id:
            why.append(f"the newest succeeded build of target {target.target}")
    for image in images_of(build):
        if image.image_id in facts.in_use:
            why.append(f"AMI {image.image_id} in {image.region} is used by {facts.in_use[image.image_id]}")
        for ident in (image.image_id, *image.snapshot_ids):
            if ident in facts.keep_tagged:
                why.append(f"{ident} in {image.region} is tagged {facts.keep_tagged[ident]}")
    return why


def _out_of_window(
    build: BuildView, images: tuple[Image, ...], retention: Retention, now: datetime
) -> Decision:
    age = now - build.started_at
    days = age.days
    out = f"beyond the {retention.keep} newest succeeded builds"
    if not build.usable:
        out = f"{_state(build)}, older than the {retention.keep} newest succeeded builds"
    expired = retention.max_age_days is None or age > timedelta(days=retention.max_age_days)
    deprecate_after = retention.deprecate_after_days
    old_enough = deprecate_after is not None and age > timedelta(days=deprecate_after)
    if deprecate_after is not None and images:
        if build.deprecated_at is not None and build.deprecated_at < now and expired:
            when = f"{build.deprecated_at:%Y-%m-%d %H:%M} UTC"
            return Decision(
                build.id, Action.REMOVE, (out, _age(days, retention), f"deprecated {when}"), images
            )
        if build.deprecated_at is None and old_enough:
            why = f"older than deprecate_after_days ({deprecate_after}): its AMIs are deprecated now"
            later = "a later prune deletes them" if expired else "deleted once older than max_age_days"
            return Decision(build.id, Action.DEPRECATE, (out, f"{days} days old", why, later), images)
        if expired:
            wait = (
                "deprecated by this run: a later prune deletes it"
                if build.deprecated_at is not None
                else f"its AMIs are deleted only after deprecation (at {deprecate_after} days)"
            )
            return Decision(build.id, Action.KEEP, (out, f"{days} days old", wait), images)
    if not expired:
        why = f"{days} days old, not older than max_age_days ({retention.max_age_days})"
        return Decision(build.id, Action.KEEP, (out, why), images)
    return Decision(build.id, Action.REMOVE, (out, _age(days, retention)), images)


def _age(days: int, retention: Retention) -> str:
    if retention.max_age_days is None:
        return f"{days} days old (no max_age_days)"
    return f"{days} days old, older than max_age_days ({retention.max_age_days})"


def _state(build: BuildView) -> str:
    if build.revoked_at is not None:
        return "revoked"
    return build.status.value


def _keep_parents(live: list[BuildView], decisions: dict[str, Decision], facts: Facts) -> None:
    """A parent of a build that stays, stays (and is not deprecated): until nothing changes,
    since keeping a parent keeps its own parent too."""
    ids = {b.id for b in live}
    changed = True
    while changed:
        changed = False
        for build in live:
            decision = decisions[build.id]
            if decision.protected:
                continue
            staying = [
                c
                for c in facts.children.get(build.id, ())
                if not c.pruned
                and (c.build_id not in ids or decisions[c.build_id].action is not Action.REMOVE)
            ]
            if staying:
                kids = ", ".join(f"{c.spec_name} {c.build_id}" for c in staying)
                decisions[build.id] = Decision(
                    build.id, Action.KEEP, (f"parent of kept build {kids}",), decision.images, True
                )
                changed = True
