"""What the catalog hands out: frozen plain data, detached from any session, so callers
never touch SQLAlchemy (and never trigger a lazy load after the transaction ended)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imgpipe.catalog.models import Artifact, Build, Channel, ChannelMove, Lease, Spec, Status, TargetBuild


@dataclass(frozen=True)
class ArtifactView:
    kind: str  # imgpipe.core.artifact.IMAGE_FILE, AMI, or a plugin's kind
    ref: str  # the file name, or the image id
    region: str | None
    data: dict[str, Any]  # file: size, sha256; cloud image: snapshot_ids, publisher
    host: str | None = None  # the host an image file lives on

    @classmethod
    def of(cls, row: Artifact) -> ArtifactView:
        return cls(kind=row.kind, ref=row.ref, region=row.region, data=dict(row.data), host=row.host)


@dataclass(frozen=True)
class TargetBuildView:
    build_id: str
    spec_name: str
    target: str
    status: Status
    started_at: datetime  # when its build started
    finished_at: datetime | None
    fingerprint: str | None
    fingerprint_parts: dict[str, Any]
    publish_fingerprint: str | None
    artifact_id: str | None
    record: dict[str, Any]  # the target's manifest record
    artifacts: tuple[ArtifactView, ...]
    parent_build_id: str | None = None  # the build whose image this target started from
    parent_target: str | None = None
    parent_ref: str | None = None  # as the spec named it: base@stable

    @classmethod
    def of(cls, row: TargetBuild) -> TargetBuildView:
        return cls(
            build_id=row.build_id,
            spec_name=row.build.spec_name,
            target=row.target,
            status=Status(row.status),
            started_at=row.build.started_at,
            finished_at=row.finished_at,
            fingerprint=row.fingerprint,
            fingerprint_parts=dict(row.fingerprint_parts),
            publish_fingerprint=row.publish_fingerprint,
            artifact_id=row.artifact_id,
            record=dict(row.record),
            artifacts=tuple(ArtifactView.of(a) for a in row.artifacts),
            parent_build_id=row.parent_build_id,
            parent_target=row.parent_target,
            parent_ref=row.parent_ref,
        )


@dataclass(frozen=True)
class BuildView:
    id: str
    spec_name: str
    spec_path: str
    status: Status
    started_at: datetime
    finished_at: datetime | None
    imgpipe_version: str
    ansible_core: str
    owner_host: str
    owner_pid: int
    targets: tuple[TargetBuildView, ...]  # every target the build set out to make, by name
    trigger: str = "bake"  # what started it: "bake" or "nightly"
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    revoked_by: str | None = None
    deprecated_at: datetime | None = None
    pruned_at: datetime | None = None
    pruning: dict[str, Any] | None = None  # the journal of a prune in progress

    @classmethod
    def of(cls, row: Build) -> BuildView:
        return cls(
            id=row.id,
            spec_name=row.spec_name,
            spec_path=row.spec_path,
            status=Status(row.status),
            started_at=row.started_at,
            finished_at=row.finished_at,
            imgpipe_version=row.imgpipe_version,
            ansible_core=row.ansible_core,
            owner_host=row.owner_host,
            owner_pid=row.owner_pid,
            trigger=row.trigger,
            revoked_at=row.revoked_at,
            revoked_reason=row.revoked_reason,
            revoked_by=row.revoked_by,
            deprecated_at=row.deprecated_at,
            pruned_at=row.pruned_at,
            pruning=dict(row.pruning) if row.pruning else None,
            targets=tuple(TargetBuildView.of(t) for t in row.targets),
        )

    def target(self, name: str) -> TargetBuildView | None:
        return next((t for t in self.targets if t.target == name), None)

    @property
    def usable(self) -> bool:
        """Succeeded, not revoked, not pruned: may be a parent or a channel's target."""
        return self.status is Status.SUCCEEDED and self.revoked_at is None and self.pruned_at is None


@dataclass(frozen=True)
class SpecView:
    name: str
    origin: str
    nightly_checked_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    nightly_failures: int

    @classmethod
    def of(cls, row: Spec) -> SpecView:
        return cls(
            name=row.name,
            origin=row.origin,
            nightly_checked_at=row.nightly_checked_at,
            disabled_at=row.disabled_at,
            disabled_reason=row.disabled_reason,
            nightly_failures=row.nightly_failures or 0,
        )


@dataclass(frozen=True)
class LeaseView:
    spec_name: str
    holder: str
    host: str  # where the holding runner runs
    pid: int
    expires_at: datetime

    @classmethod
    def of(cls, row: Lease) -> LeaseView:
        return cls(
            spec_name=row.spec_name,
            holder=row.holder,
            host=str(row.owner.get("host", "?")),
            pid=int(row.owner.get("pid", 0)),
            expires_at=row.expires_at,
        )


@dataclass(frozen=True)
class ChannelView:
    spec_name: str
    channel: str
    build_id: str | None  # None only while its first move is pending
    moved_at: datetime | None
    places: tuple[dict[str, Any], ...]  # where it is visible: {"kind": "ssm"|"link", ...}
    pending: dict[str, Any] | None  # the journal of a move in progress

    @classmethod
    def of(cls, row: Channel) -> ChannelView:
        return cls(
            spec_name=row.spec_name,
            channel=row.channel,
            build_id=row.build_id,
            moved_at=row.moved_at,
            places=tuple(dict(p) for p in row.places or ()),
            pending=dict(row.pending) if row.pending else None,
        )


@dataclass(frozen=True)
class ChannelMoveView:
    spec_name: str
    channel: str
    from_build: str | None
    to_build: str
    outcome: str  # moved, rolled back, reverted, completed
    moved_by: str
    moved_at: datetime
    detail: str | None

    @classmethod
    def of(cls, row: ChannelMove) -> ChannelMoveView:
        return cls(
            spec_name=row.spec_name,
            channel=row.channel,
            from_build=row.from_build,
            to_build=row.to_build,
            outcome=row.outcome,
            moved_by=row.moved_by,
            moved_at=row.moved_at,
            detail=row.detail,
        )
