"""Channels: named pointers (`latest`, `stable`, ...) at a spec's builds, visible where the
images live: an SSM parameter per region holding the AMI id, and a symlink per channel
under the output directory for image files.

A move is journaled in the catalog before any place changes (each place with its old and
new value), applied place by place, and closed in one transaction: it completes
everywhere or leaves the old pointer everywhere. A failure rolls back the places already
changed; after a kill -9, the next command that opens the channel reverts the move (or
records it, when every place had its new value)."""

from __future__ import annotations

import getpass
import os
import re
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.catalog.models import Status
from imgpipe.catalog.owner import Owner
from imgpipe.errors import PublishError, SpecError

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.catalog import BuildView, Catalog
    from imgpipe.catalog.views import ChannelView

LATEST = "latest"  # moves by itself to each new succeeded build
DEFAULT_SSM_PARAMETER = "/images/{name}/{channel}"
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
# <output>/<spec>@<channel> -> <spec>/<build id>: beside the spec's build directories, never
# among them ('@' is in no spec name), and relative, so the output tree can move
MOVED, ROLLED_BACK, REVERTED, COMPLETED = "moved", "rolled back", "reverted", "completed"
_GONE = "its process was gone"


@dataclass(frozen=True)
class MoveResult:
    spec_name: str
    channel: str
    build_id: str
    previous: str | None
    places: list[dict[str, Any]]  # where the channel now points at build_id
    recovered: list[str] = field(default_factory=list)  # moves of dead processes finished first
    unchanged: bool = False  # it already pointed at build_id
    dry_run: bool = False  # nothing was changed: `places` (with "before") is what a move would do

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, **asdict(self)}


def check_channel_name(channel: str) -> str:
    if not CHANNEL_NAME.match(channel):
        raise SpecError(
            f"{channel!r} is not a channel name",
            hint="use lower-case letters, digits, '.', '_', '-', starting with a letter (e.g. stable)",
        )
    return channel


class Mover:
    """Moves a spec's channels. `aws` is the session SSM is written through (default: one
    made on first use per AWS profile the images were made with, with boto3's usual
    credentials and AWS_ENDPOINT_URL)."""

    def __init__(self, catalog: Catalog, aws: AwsSession | None = None, by: str | None = None) -> None:
        self.catalog = catalog
        self._sessions: dict[str | None, AwsSession] = {} if aws is None else {None: aws}
        self.by = by or f"{getpass.getuser()}@{socket.gethostname()}"

    def promote(self, spec_name: str, build_ref: str, channel: str, dry_run: bool = False) -> MoveResult:
        """Point `channel` at a succeeded build of `spec_name` everywhere, or nowhere.
        SpecError for a bad channel name, an unknown, foreign or failed build; PublishError
        when a place refused the move (the others are back at their old value). `dry_run`
        only reads: where the channel would change, from what to what."""
        check_channel_name(channel)
        recovered = [] if dry_run else self.recover(spec_name, channel)
        build = self.catalog.get(build_ref)
        if build is None or build.spec_name != spec_name:
            hint = f"`imgpipe builds {spec_name}` lists its builds"
            if build is None:
                raise SpecError(f"no build {build_ref!r} in the catalog {self.catalog.url_masked}", hint=hint)
            raise SpecError(f"build {build.id} is a build of {build.spec_name}, not {spec_name}", hint=hint)
        _check_promotable(build)
        if dry_run:
            current = self.catalog.channel(spec_name, channel)
            previous = current.build_id if current else None
            places = [self._with_before(p) for p in places_for(build, channel)]
            return MoveResult(spec_name, channel, build.id, previous, places, [], previous == build.id, True)
        return self.move(build, channel, recovered)

    def move(self, build: BuildView, channel: str, recovered: list[str] | None = None) -> MoveResult:
        current = self.catalog.channel(build.spec_name, channel)
        previous = current.build_id if current else None
        if current is not None and previous == build.id and current.pending is None:
            places = list(current.places)
            return MoveResult(build.spec_name, channel, build.id, previous, places, recovered or [], True)
        places = [self._with_before(p) for p in places_for(build, channel)]
        token = uuid.uuid4().hex
        journal = {
            "token": token,
            "owner": asdict(Owner.current()),
            "from": previous,
            "to": build.id,
            "by": self.by,
            "state": "moving",
            "places": places,
        }
        self.catalog.begin_channel_move(build.spec_name, channel, journal)
        applied: list[dict[str, Any]] = []
        try:
            for place in places:
                applied.append(place)
                self._apply(place, place["after"])
            self.catalog.mark_channel_move(build.spec_name, channel, token, "applied")
        except BaseException as exc:
            failures = self._undo(applied)
            if not failures:
                self.catalog.end_channel_move(build.spec_name, channel, token, ROLLED_BACK, _describe(exc))
            # else the journal stays: once this process is gone, the next command puts them back
            if not isinstance(exc, Exception):
                raise
            raise PublishError(
                f"moving channel {channel} of {build.spec_name} to build {build.id} failed at "
                f"{_where(applied[-1]) if applied else 'the start'}: {_describe(exc)}; "
                + (
                    f"could not put back: {'; '.join(failures)}; the move stays journaled and the "
                    "next command on this channel puts them back"
                    if failures
                    else f"every place points at {previous or 'nothing'} again"
                ),
                hint="fix the cause (credentials, permissions, the parameter path) and promote again",
            ) from exc
        self.catalog.end_channel_move(build.spec_name, channel, token, MOVED)
        return MoveResult(build.spec_name, channel, build.id, previous, _public(places), recovered or [])

    def recover(self, spec_name: str, channel: str | None = None) -> list[str]:
        """Finish the moves of processes that are gone (kill -9, a crash): record one whose
        places all hold their new value, revert any other. Returns what it did, one line each
        (a revert a place refuses stays journaled, and is said so)."""
        done = []
        for row in self.catalog.channels(spec_name):
            if (channel is not None and row.channel != channel) or not row.pending:
                continue
            move = row.pending
            if not _journal_owner(move).is_gone():
                continue
            token = str(move["token"])
            if move.get("state") == "applied":
                self.catalog.end_channel_move(spec_name, row.channel, token, COMPLETED, _GONE)
                done.append(f"{row.channel}: completed the move to {move['to']} of a process that is gone")
                continue
            failures = self._undo(list(move["places"]))
            if failures:  # the journal stays: the next command tries again
                done.append(
                    f"{row.channel}: could not yet revert the interrupted move to {move['to']}: "
                    f"{'; '.join(failures)} (still journaled)"
                )
                continue
            self.catalog.end_channel_move(spec_name, row.channel, token, REVERTED, _GONE)
            back = move["from"] or "nothing"
            done.append(f"{row.channel}: reverted the interrupted move to {move['to']} (back at {back})")
        return done

    def _with_before(self, place: dict[str, Any]) -> dict[str, Any]:
        if place["kind"] == "link":
            path = Path(place["path"])
            before = os.readlink(path) if path.is_symlink() else None
            return {**place, "before": before}
        from imgpipe.aws.errors import error_code

        try:
            old = self._ssm(place).get_parameter(Name=place["name"])["Parameter"]
        except Exception as exc:
            if error_code(exc) != "ParameterNotFound":
                raise PublishError(
                    f"could not read SSM parameter {place['name']} in {place['region']}: {_describe(exc)}",
                    hint="check the AWS credentials and their ssm:GetParameter permission",
                ) from exc
            return {**place, "before": None}
        before = {"Value": old["Value"], "Type": old["Type"], "DataType": old.get("DataType", "text")}
        return {**place, "before": before}

    def _apply(self, place: dict[str, Any], value: Any) -> None:
        if place["kind"] == "link":
            _point_link(Path(place["path"]), value)
            return
        from imgpipe.publish.ami import _put_image_id, _restore

        ssm = self._ssm(place)
        if isinstance(value, dict) or value is None:  # an old value to restore
            _restore(ssm, place["name"], value)
        else:
            _put_image_id(ssm, place["name"], value)

    def _undo(self, places: list[dict[str, Any]]) -> list[str]:
        failures = []
        for place in reversed(places):
            try:
                self._apply(place, place["before"])
            except Exception as exc:  # noqa: BLE001 - put back every other place, then report
                failures.append(f"{_where(place)}: {_describe(exc)}")
        return failures

    def _ssm(self, place: dict[str, Any]) -> Any:
        """SSM in the place's region, as the profile its image was made with."""
        profile = place.get("profile")
        if profile not in self._sessions:
            from imgpipe.aws.session import AwsSession, AwsSettings

            self._sessions[profile] = AwsSession(AwsSettings(profile=profile))
        return self._sessions[profile].client("ssm", place["region"])


def move_latest(catalog: Catalog, build_id: str) -> MoveResult:
    """A build succeeded: `latest` points at it."""
    mover = Mover(catalog)
    mover.recover(_spec_of(catalog, build_id), LATEST)
    build = catalog.get(build_id)
    assert build is not None
    if build.revoked_at is not None:  # revoked while it ran (imgpipe.revoke)
        raise SpecError(f"build {build_id} was revoked while it ran: {build.revoked_reason}")
    return mover.move(build, LATEST)


def places_for(build: BuildView, channel: str) -> list[dict[str, Any]]:
    """Where `channel` shows `build`: one symlink `<output>/<name>@<channel>` when it has
    image files on this host, one SSM parameter per target and region
    of its AMIs (its path from the spec's `channels.ssm_parameter`, as the build recorded it)."""
    from imgpipe.core.artifact import AMI, IMAGE_FILE

    places: dict[tuple[str, ...], dict[str, Any]] = {}
    ami_targets = {t.target for t in build.targets for a in t.artifacts if a.kind == AMI}
    for t in build.targets:
        template = (t.record.get("channels") or {}).get("ssm_parameter") or DEFAULT_SSM_PARAMETER
        out = t.record.get("output_dir")
        if out and any(a.kind == IMAGE_FILE for a in t.artifacts):
            build_dir = Path(out)
            link = build_dir.parent.parent / f"{build.spec_name}@{channel}"
            after = f"{build_dir.parent.name}/{build_dir.name}"
            places[("link", str(link))] = {"kind": "link", "path": str(link), "after": after}
        if len(ami_targets) > 1 and "{target}" not in template:
            raise SpecError(
                f"build {build.id} has AMIs of several targets ({', '.join(sorted(ami_targets))}), and "
                f"the SSM parameter path {template} would hold only one of them",
                hint="put {target} in the spec's channels.ssm_parameter: /images/{name}/{target}/{channel}",
            )
        for a in t.artifacts:
            if a.kind != AMI or not a.region:
                continue
            name = template.format(name=build.spec_name, channel=channel, target=t.target)
            if channel == LATEST and a.data.get("ssm_parameter"):
                name = str(a.data["ssm_parameter"])  # a publisher's parameter is `latest`'s pointer
            place = {"kind": "ssm", "region": a.region, "name": name, "after": a.ref}
            if a.data.get("profile"):
                place["profile"] = a.data["profile"]
            places[("ssm", a.region, name)] = place
    return list(places.values())


def _check_promotable(build: BuildView) -> None:
    if build.revoked_at is not None:
        raise SpecError(
            f"build {build.id} of {build.spec_name} is revoked ({build.revoked_reason}): "
            "a revoked build can't be a channel's target",
            hint=f"`imgpipe channels {build.spec_name}` shows where the channels point",
        )
    if build.pruned_at is not None:
        raise SpecError(
            f"build {build.id} of {build.spec_name} was pruned: its images are gone",
            hint="promote a build whose images still exist",
        )
    if build.status != Status.SUCCEEDED:
        raise SpecError(
            f"build {build.id} of {build.spec_name} {build.status.value}: "
            "only a succeeded build can be promoted",
            hint=f"`imgpipe builds {build.spec_name}` lists its builds with their status",
        )
    from imgpipe.history import artifacts_gone

    for t in build.targets:
        gone = [g for g in artifacts_gone(t) if g.startswith("image file")] if not _has_ami(t) else []
        if gone:
            raise SpecError(
                f"build {build.id} of {build.spec_name} can't be promoted: its {gone[0]} (pruned?)",
                hint="promote a build whose images still exist",
            )
    if not places_for(build, "probe"):
        raise SpecError(
            f"build {build.id} of {build.spec_name} has no image a channel could show (no image file "
            "on this host, no AMI)",
            hint="an image file's channel is a symlink on the host that built it: promote there",
        )


def _has_ami(target: Any) -> bool:
    from imgpipe.core.artifact import AMI

    return any(a.kind == AMI for a in target.artifacts)


def _point_link(path: Path, target: str | None) -> None:
    """Atomically: a temporary symlink renamed over the old one (readers never see none)."""
    if target is None:
        if path.is_symlink():  # anything else there was never ours
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _spec_of(catalog: Catalog, build_id: str) -> str:
    build = catalog.get(build_id)
    if build is None:
        raise SpecError(f"no build {build_id!r} in the catalog {catalog.url_masked}")
    return build.spec_name


def _journal_owner(move: dict[str, Any]) -> Owner:
    try:
        return Owner(**move["owner"])
    except (KeyError, TypeError):
        return Owner("", 0, None, "", "", "")  # unreadable: never judged gone


def _public(places: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "before"} for p in places]


def _where(place: dict[str, Any]) -> str:
    if place["kind"] == "link":
        return f"symlink {place['path']}"
    return f"SSM parameter {place['name']} in {place['region']}"


def _describe(exc: BaseException) -> str:
    """An AWS error as `Code: message` (searchable), anything else as its text."""
    error = getattr(exc, "response", None)
    error = error.get("Error") if isinstance(error, dict) else None
    if error:
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def describe(view: ChannelView) -> str:
    """One line: where a channel points."""
    pending = f" (moving to {view.pending['to']})" if view.pending else ""
    return f"{view.channel} -> {view.build_id or '-'}{pending}"
