"""The catalog's tables as typed SQLAlchemy models. Only catalog/ imports this module;
the schema changes through a migration in migrations/versions/, never here alone."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, ForeignKeyConstraint, Index, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class Status(StrEnum):
    """A build's or a target's state. Only `running` ever changes."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"  # its owner process died without saying how it ended


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite, which keeps no zone, stores UTC wall time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the catalog stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class CatalogKey(Base):
    """The HMAC key every runner sharing this catalog fingerprints sensitive values with."""

    __tablename__ = "catalog_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[bytes]
    created_at: Mapped[datetime]


class Spec(Base):
    """A spec name and the one place (host:path) that owns it; nightly's memory of it."""

    __tablename__ = "spec"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    origin: Mapped[str] = mapped_column(Text)
    claimed_at: Mapped[datetime]
    nightly_checked_at: Mapped[datetime | None]  # the last nightly run that found it due
    disabled_at: Mapped[datetime | None]  # nightly skips it until `nightly --enable`
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    nightly_failures: Mapped[int] = mapped_column(default=0)  # failed nightly bakes in a row


class Lease(Base):
    """Who bakes a spec right now. The holder renews it while it works; a lease past
    `expires_at` (its runner died or lost the database) is anyone's to take."""

    __tablename__ = "lease"

    spec_name: Mapped[str] = mapped_column(ForeignKey("spec.name"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # a random token per acquisition
    owner: Mapped[dict[str, Any]]  # imgpipe.catalog.owner.Owner of the holding process
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Build(Base):
    __tablename__ = "build"
    __table_args__ = (Index("ix_build_spec_started", "spec_name", "started_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec_name: Mapped[str] = mapped_column(ForeignKey("spec.name"))
    spec_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    target_names: Mapped[list[str]]
    imgpipe_version: Mapped[str] = mapped_column(String(64))
    ansible_core: Mapped[str] = mapped_column(String(64))
    owner_host: Mapped[str] = mapped_column(String(255))
    owner_pid: Mapped[int]
    owner_pid_start: Mapped[str | None] = mapped_column(String(32))
    owner_boot: Mapped[str] = mapped_column(String(64))
    owner_pidns: Mapped[str] = mapped_column(String(64))
    owner_machine: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    trigger: Mapped[str] = mapped_column(String(16), default="bake")  # "bake" or "nightly"
    # a build's life after it ended; its status never changes for these
    revoked_at: Mapped[datetime | None]  # never a parent or a channel's target again
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    deprecated_at: Mapped[datetime | None]  # its AMIs were given an EC2 deprecation time
    pruned_at: Mapped[datetime | None]  # its images are gone; the record stays
    # the journal of a prune in progress
    pruning: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    targets: Mapped[list[TargetBuild]] = relationship(
        back_populates="build", order_by="TargetBuild.target", cascade="all, delete-orphan"
    )


class TargetBuild(Base):
    """One target of one build: how it ended, its fingerprint and its manifest record."""

    __tablename__ = "target_build"
    __table_args__ = (
        Index("ix_target_build_fingerprint", "target", "fingerprint"),
        Index("ix_target_build_parent", "parent_build_id"),
    )

    build_id: Mapped[str] = mapped_column(ForeignKey("build.id", ondelete="CASCADE"), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    fingerprint_parts: Mapped[dict[str, Any]]
    publish_fingerprint: Mapped[str | None] = mapped_column(String(128))
    artifact_id: Mapped[str | None] = mapped_column(Text)
    record: Mapped[dict[str, Any]]
    finished_at: Mapped[datetime | None]
    # the image imgpipe built that this target started from (`source: {parent: ...}`)
    parent_build_id: Mapped[str | None] = mapped_column(String(64))
    parent_target: Mapped[str | None] = mapped_column(String(200))
    parent_ref: Mapped[str | None] = mapped_column(Text)  # as the spec said it: base@stable

    build: Mapped[Build] = relationship(back_populates="targets")
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="target_build", order_by="Artifact.id", cascade="all, delete-orphan"
    )


class Artifact(Base):
    """Something a target made that outlives the build: an image file, a cloud image in
    one region (with its snapshots in `data`). Retention will delete by these rows."""

    __tablename__ = "artifact"
    __table_args__ = (
        ForeignKeyConstraint(
            ["build_id", "target"], ["target_build.build_id", "target_build.target"], ondelete="CASCADE"
        ),
        Index("ix_artifact_kind_ref", "kind", "ref"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(Text)  # file name, image id
    region: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))  # where an image file lives
    data: Mapped[dict[str, Any]]

    target_build: Mapped[TargetBuild] = relationship(back_populates="artifacts")


class Channel(Base):
    """A named pointer (`latest`, `stable`, ...) at one build of a spec. `pending` is the
    journal of a move in progress (its places with their old and new values, its owner):
    the next command that opens the channel completes or reverts a move whose owner died."""

    __tablename__ = "channel"

    spec_name: Mapped[str] = mapped_column(ForeignKey("spec.name"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    build_id: Mapped[str | None] = mapped_column(String(64))  # None until its first move completes
    moved_at: Mapped[datetime | None]
    places: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # where it is visible now
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ChannelMove(Base):
    """Every move of a channel, and every one rolled back or reverted: AWS keeps no
    deletable history of a parameter's versions, so this table is the history."""

    __tablename__ = "channel_history"
    __table_args__ = (Index("ix_channel_history_channel", "spec_name", "channel", "moved_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    spec_name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(64))
    from_build: Mapped[str | None] = mapped_column(String(64))
    to_build: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # moved, rolled back, reverted, completed
    moved_by: Mapped[str] = mapped_column(String(255))  # user@host
    moved_at: Mapped[datetime]
    detail: Mapped[str | None] = mapped_column(Text)  # why it was rolled back
