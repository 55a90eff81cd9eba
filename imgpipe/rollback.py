"""Where a channel goes when the build it points at is revoked: the previous good build.

Good: succeeded, not revoked, not pruned, promotable (its image files are here, or it has
AMIs), and none of its AMIs deregistered. Looked for first among the builds the channel
pointed at before (its history, newest first), then among the spec's builds older than
the revoked one. None found: the channel is left where it is (see imgpipe.revoke)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgpipe.errors import SpecError

if TYPE_CHECKING:
    from imgpipe.catalog import BuildView, Catalog
    from imgpipe.catalog.views import ChannelView

_HISTORY_LIMIT = 1000  # channel moves looked at for the previous good build
_BUILDS_LIMIT = 1000  # builds of the spec looked at when its history has none


@dataclass(frozen=True)
class Choice:
    build: BuildView | None  # None: no good build to roll back to
    why: str  # how it was found, or why there is none
    places: list[dict[str, Any]] = field(default_factory=list)  # where the channel will show it
    stale: list[str] = field(default_factory=list)  # places it shows now that `build` has no image for


def choose(catalog: Catalog, channel: ChannelView, dead: set[str]) -> Choice:
    """The build `channel` rolls back to, with `dead` (the builds being revoked) excluded."""
    from imgpipe.channels import places_for

    build, why = _previous_good(catalog, channel, dead)
    if build is None:
        where = ", ".join(where_is(p) for p in channel.places) or "the catalog only"
        return Choice(
            None,
            f"no good build to roll back to: it still points at revoked build {channel.build_id} ({where}); "
            f"promote a good build: imgpipe promote {channel.spec_name} BUILD --channel {channel.channel}",
        )
    places = places_for(build, channel.channel)
    covered = {_key(p) for p in places}
    stale = [where_is(p) for p in channel.places if _key(p) not in covered]
    return Choice(build, why, places, stale)


def _previous_good(catalog: Catalog, channel: ChannelView, dead: set[str]) -> tuple[BuildView | None, str]:
    from imgpipe.channels import COMPLETED, MOVED

    looked: set[str] = set(dead)
    for move in catalog.channel_history(channel.spec_name, channel.channel, limit=_HISTORY_LIMIT):
        been = [move.to_build] if move.outcome in (MOVED, COMPLETED) else []
        for build_id in [*been, move.from_build]:
            if not build_id or build_id in looked:
                continue
            looked.add(build_id)
            build = catalog.get(build_id)
            if build is not None and build.spec_name == channel.spec_name and _promotable(build):
                return build, f"the build it pointed at before, moved {move.moved_at:%Y-%m-%d %H:%M} UTC"
    current = catalog.get(str(channel.build_id))
    for build in catalog.builds(channel.spec_name, limit=_BUILDS_LIMIT):
        if build.id in looked or (current is not None and build.started_at >= current.started_at):
            continue
        if _promotable(build):
            return build, "the newest good build of the spec before it; the channel never pointed at one"
    return None, ""


def _promotable(build: BuildView) -> bool:
    from imgpipe.channels import _check_promotable

    if not build.usable:
        return False
    try:
        _check_promotable(build)
    except SpecError:
        return False
    return not _amis_gone(build)


def _amis_gone(build: BuildView) -> bool:
    """True when an AMI of `build` is deregistered (a channel there would point at nothing).
    Asks EC2; when it can't be asked, the build is taken as it is recorded."""
    from imgpipe.aws.images import missing_images
    from imgpipe.core.artifact import AMI

    for t in build.targets:
        images = [{"region": a.region, "image_id": a.ref} for a in t.artifacts if a.kind == AMI and a.region]
        if not images:
            continue
        try:
            if missing_images(images, (t.fingerprint_parts.get("target") or {}).get("aws.profile")):
                return True
        except Exception:  # noqa: BLE001, S110 - no answer is not "gone": the move itself will tell
            pass
    return False


def _key(place: dict[str, Any]) -> tuple[str, ...]:
    if place["kind"] == "link":
        return ("link", str(place["path"]))
    return ("ssm", str(place["region"]), str(place["name"]))


def where_is(place: dict[str, Any]) -> str:
    if place["kind"] == "link":
        return f"symlink {place['path']}"
    return f"SSM parameter {place['name']} in {place['region']}"
