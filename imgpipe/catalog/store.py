"""The Catalog: every bake's record, queryable. Each method is one short transaction,
so a bake killed at any moment leaves the catalog as it was after its last step."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from imgpipe.catalog.errors import CatalogError
from imgpipe.catalog.models import (
    Artifact,
    Build,
    CatalogKey,
    Channel,
    ChannelMove,
    Lease,
    Spec,
    Status,
    TargetBuild,
)
from imgpipe.catalog.owner import Owner
from imgpipe.catalog.record import artifacts_in, plain
from imgpipe.catalog.schema import ensure_schema
from imgpipe.catalog.url import catalog_url, engine_url, mask_url, scrub
from imgpipe.catalog.views import (
    BuildView,
    ChannelMoveView,
    ChannelView,
    LeaseView,
    SpecView,
    TargetBuildView,
)
from imgpipe.core.artifact import IMAGE_FILE

__all__ = ["Catalog", "CatalogError", "open_catalog"]

ENDINGS = (Status.SUCCEEDED, Status.FAILED, Status.INTERRUPTED)
_SQLITE_BUSY_MS = 30_000


def open_catalog(url: str | None = None) -> Catalog:
    """Open the catalog at `url` (default: catalog_url()), creating or migrating its schema
    to this imgpipe's; CatalogError if it can't be reached or a newer imgpipe wrote it."""
    url = catalog_url(url)
    catalog = Catalog(_create_engine(url), mask_url(url), url)
    try:
        catalog.migrate()
    except BaseException:
        catalog.close()
        raise
    return catalog


class Catalog:
    """Builds, their targets and artifacts, spec names and who owns them, and the HMAC key."""

    def __init__(self, engine: Engine, url_masked: str, url: str) -> None:
        self._engine = engine
        self.url_masked = url_masked
        self._url = url  # only to scrub its password from driver messages
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._key: bytes | None = None

    def close(self) -> None:
        self._engine.dispose()

    def migrate(self) -> None:
        """Create the schema, or migrate it to this imgpipe's; refuse a newer one."""
        with self._translated_errors("open the catalog"):
            ensure_schema(self._engine, self.url_masked)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hmac_key(self) -> bytes:
        """The key for fingerprinting sensitive values: made once with the catalog, the same
        for every runner that shares it."""
        if self._key is None:
            with self._transaction("read the HMAC key") as session:
                row = session.get(CatalogKey, 1)
                if row is None:
                    raise CatalogError(f"the catalog at {self.url_masked} has lost its HMAC key")
                self._key = bytes(row.key)
        return self._key

    def claim_spec(self, name: str, origin: str) -> None:
        """Make `origin` (where the spec lives, e.g. "host:/abs/path.yml") the owner of the
        spec name `name`; the first claim wins, and a claim from elsewhere is refused so one
        team's prune can never reach another team's images."""
        for attempt in range(2):
            try:
                with self._transaction("claim the spec name") as session:
                    owner = session.get(Spec, name)
                    if owner is None:
                        session.add(Spec(name=name, origin=origin, claimed_at=_now(), nightly_failures=0))
                        return
            except CatalogError as exc:
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise
                continue  # another runner claimed it this instant: read its claim
            if owner.origin != origin:
                raise CatalogError(
                    f"spec name {name!r} is taken in the catalog at {self.url_masked}: it belongs to "
                    f"{owner.origin}, and this spec is {origin}",
                    hint="give this spec its own name (e.g. prefix it with your team's)",
                )
            return

    def start_build(
        self,
        build_id: str,
        spec_name: str,
        spec_path: str,
        targets: list[str],
        *,
        imgpipe_version: str,
        ansible_core: str,
        trigger: str = "bake",
        parents: dict[str, tuple[str, str, str]] | None = None,
    ) -> None:
        """Record a build as running, owned by this process; `spec_name` must be claimed.
        `trigger` says what started it: "bake" or "nightly". `parents` maps a target to
        the (build id, target, reference) of the image it starts from."""
        parents = parents or {}
        owner = Owner.current()
        with self._transaction("record the build's start") as session:
            if session.get(Spec, spec_name) is None:
                raise CatalogError(
                    f"spec name {spec_name!r} is not claimed in the catalog: claim_spec() first"
                )
            session.add(
                Build(
                    id=build_id,
                    spec_name=spec_name,
                    spec_path=spec_path,
                    status=Status.RUNNING,
                    target_names=list(targets),
                    imgpipe_version=imgpipe_version,
                    ansible_core=ansible_core,
                    owner_host=owner.host,
                    owner_pid=owner.pid,
                    owner_pid_start=owner.pid_start,
                    owner_boot=owner.boot,
                    owner_pidns=owner.pidns,
                    owner_machine=owner.machine,
                    started_at=_now(),
                    trigger=trigger,
                    targets=[
                        TargetBuild(
                            target=t,
                            status=Status.RUNNING,
                            fingerprint_parts={},
                            record={},
                            parent_build_id=parents[t][0] if t in parents else None,
                            parent_target=parents[t][1] if t in parents else None,
                            parent_ref=parents[t][2] if t in parents else None,
                        )
                        for t in targets
                    ],
                )
            )

    def finish_target(
        self,
        build_id: str,
        target: str,
        *,
        status: str,
        fingerprint: str | None,
        fingerprint_parts: dict[str, Any],
        publish_fingerprint: str | None,
        record: dict[str, Any],
    ) -> None:
        """Record how one target ended (succeeded / failed / interrupted), with its manifest
        record (artifact_id, files, data, build_vm, verify, sbom, timings, error, source,
        published) and the artifacts found in it."""
        ending = _ending(status)
        record = plain(record)
        parts = plain(fingerprint_parts)
        with self._transaction("record the target's end") as session:
            row = session.get(TargetBuild, (build_id, target))
            if row is None:
                raise CatalogError(f"build {build_id} has no target {target!r} in the catalog")
            row.status = ending
            row.fingerprint = fingerprint
            row.fingerprint_parts = parts
            row.publish_fingerprint = publish_fingerprint
            row.artifact_id = record.get("artifact_id")
            row.record = record
            row.finished_at = _now()
            host = row.build.owner_host  # an image file lives where its build ran
            row.artifacts = [
                Artifact(
                    kind=a.kind,
                    ref=a.ref,
                    region=a.region,
                    host=host if a.kind == IMAGE_FILE else None,
                    data=a.data,
                )
                for a in artifacts_in(record)
            ]

    def finish_build(self, build_id: str, status: str) -> None:
        """Record how the build ended. A target it never finished ends `interrupted` with an
        interrupted build, else `failed` (never `succeeded`: it recorded no image)."""
        ending = _ending(status)
        left = Status.INTERRUPTED if ending is Status.INTERRUPTED else Status.FAILED
        with self._transaction("record the build's end") as session:
            build = session.get(Build, build_id)
            if build is None or build.status != Status.RUNNING:
                state = "is not in the catalog" if build is None else f"has already ended ({build.status})"
                raise CatalogError(f"build {build_id} {state}")
            now = _now()
            build.status, build.finished_at = ending, now
            for row in build.targets:
                if row.status == Status.RUNNING:
                    row.status, row.finished_at = left, now

    def reap_abandoned(self, spec_name: str | None = None) -> list[str]:
        """Mark `abandoned` every running build (of `spec_name`, or all) whose owner process
        ran on this host and is gone (kill -9, a crash, a reboot); returns their ids. Builds
        of other hosts are left to those hosts."""
        query = select(Build).where(Build.status == Status.RUNNING).options(selectinload(Build.targets))
        if spec_name is not None:
            query = query.where(Build.spec_name == spec_name)
        reaped = []
        with self._transaction("mark abandoned builds") as session:
            for build in session.scalars(query):
                if not _owner(build).is_gone():
                    continue
                now = _now()
                session.execute(
                    update(Build)
                    .where(Build.id == build.id, Build.status == Status.RUNNING)
                    .values(status=Status.ABANDONED, finished_at=now)
                )
                session.execute(
                    update(TargetBuild)
                    .where(TargetBuild.build_id == build.id, TargetBuild.status == Status.RUNNING)
                    .values(status=Status.ABANDONED, finished_at=now)
                )
                reaped.append(build.id)
        return reaped

    def acquire_lease(self, spec_name: str, holder: str, ttl_s: float) -> LeaseView:
        """Take the spec's lease for `holder` (a token unique to this attempt) for `ttl_s`
        seconds when it is free, expired, already `holder`'s, or held by a process of this
        host that is gone. Returns the lease as it now stands: granted when its holder is
        `holder`; else it names the runner that holds it."""
        owner = Owner.current()
        for attempt in range(2):
            try:
                with self._transaction("take the spec's lease") as session:
                    row = session.get(Lease, spec_name, with_for_update=True)
                    now = _now()
                    if row is None:
                        row = Lease(spec_name=spec_name, holder=holder, owner=asdict(owner), acquired_at=now)
                        session.add(row)
                    elif row.holder != holder and row.expires_at > now and not _lease_owner(row).is_gone():
                        return LeaseView.of(row)
                    elif row.holder != holder:
                        row.holder, row.owner, row.acquired_at = holder, asdict(owner), now
                    row.expires_at = now + timedelta(seconds=ttl_s)
                    return LeaseView.of(row)
            except CatalogError as exc:
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")

    def renew_lease(self, spec_name: str, holder: str, ttl_s: float) -> bool:
        """Extend `holder`'s lease; False if it is no longer `holder`'s (it expired and
        another runner took it)."""
        with self._transaction("renew the spec's lease") as session:
            done = session.execute(
                update(Lease)
                .where(Lease.spec_name == spec_name, Lease.holder == holder)
                .values(expires_at=_now() + timedelta(seconds=ttl_s))
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def release_lease(self, spec_name: str, holder: str) -> None:
        with self._transaction("release the spec's lease") as session:
            session.execute(delete(Lease).where(Lease.spec_name == spec_name, Lease.holder == holder))

    def spec_state(self, spec_name: str) -> SpecView | None:
        with self._transaction("read the spec") as session:
            row = session.get(Spec, spec_name)
            return SpecView.of(row) if row else None

    def specs(self) -> list[SpecView]:
        with self._transaction("list specs") as session:
            return [SpecView.of(row) for row in session.scalars(select(Spec).order_by(Spec.name))]

    def mark_nightly_checked(self, spec_name: str, when: datetime) -> None:
        """A nightly run found the spec due at `when`: its schedule counts from here."""
        with self._transaction("record the nightly check") as session:
            session.execute(update(Spec).where(Spec.name == spec_name).values(nightly_checked_at=when))

    def count_nightly_result(self, spec_name: str, *, failed: bool, disable_after: int) -> SpecView:
        """Count a nightly bake's outcome: a failure adds one to the spec's failures in a
        row, and the `disable_after`th disables it; a success starts the count again."""
        with self._transaction("count the nightly result") as session:
            row = session.get(Spec, spec_name, with_for_update=True)
            if row is None:
                raise CatalogError(f"spec name {spec_name!r} is not claimed in the catalog")
            row.nightly_failures = row.nightly_failures + 1 if failed else 0
            if failed and row.nightly_failures >= disable_after and row.disabled_at is None:
                row.disabled_at = _now()
                row.disabled_reason = f"{row.nightly_failures} nightly bakes in a row failed"
            return SpecView.of(row)

    def enable_spec(self, spec_name: str) -> SpecView:
        """Let nightly bake a disabled spec again, its failure count reset."""
        with self._transaction("enable the spec") as session:
            row = session.get(Spec, spec_name)
            if row is None:
                raise CatalogError(
                    f"spec {spec_name!r} is not in the catalog at {self.url_masked}",
                    hint="`imgpipe status SPEC` or `imgpipe builds` list the specs the catalog knows",
                )
            row.disabled_at, row.disabled_reason, row.nightly_failures = None, None, 0
            return SpecView.of(row)

    def last_good(self, spec_name: str, target: str) -> TargetBuildView | None:
        """The newest build of `target` that succeeded."""
        return self._newest_good(spec_name, target, fingerprint=None)

    def find_good(self, spec_name: str, target: str, fingerprint: str) -> TargetBuildView | None:
        """The newest successful build of `target` from exactly these inputs."""
        return self._newest_good(spec_name, target, fingerprint=fingerprint)

    def builds(self, spec_name: str | None = None, limit: int = 50) -> list[BuildView]:
        """Builds, newest first."""
        query = _builds().order_by(Build.started_at.desc(), Build.id.desc()).limit(limit)
        if spec_name is not None:
            query = query.where(Build.spec_name == spec_name)
        with self._transaction("list builds") as session:
            return [BuildView.of(b) for b in session.scalars(query)]

    def get(self, build_id: str) -> BuildView | None:
        """A build by its id or a unique prefix of it; CatalogError if the prefix is ambiguous."""
        with self._transaction("read a build") as session:
            exact = session.scalars(_builds().where(Build.id == build_id)).first()
            if exact is not None:
                return BuildView.of(exact)
            pattern = build_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            found = session.scalars(_builds().where(Build.id.like(pattern, escape="\\")).limit(4)).all()
            if len(found) > 1:
                some = ", ".join(b.id for b in found[:3]) + (", ..." if len(found) > 3 else "")
                raise CatalogError(
                    f"build id {build_id!r} is ambiguous: it matches {some}",
                    hint="give more of the build id",
                )
            return BuildView.of(found[0]) if found else None

    def _newest_good(self, spec_name: str, target: str, fingerprint: str | None) -> TargetBuildView | None:
        query = (
            select(TargetBuild)
            .join(Build)
            .where(
                Build.spec_name == spec_name,
                TargetBuild.target == target,
                TargetBuild.status == Status.SUCCEEDED,
                Build.revoked_at.is_(None),
                Build.pruned_at.is_(None),
            )
            .order_by(Build.started_at.desc(), Build.id.desc())
            .options(selectinload(TargetBuild.build), selectinload(TargetBuild.artifacts))
            .limit(1)
        )
        if fingerprint is not None:
            query = query.where(TargetBuild.fingerprint == fingerprint)
        with self._transaction("find a good build") as session:
            row = session.scalars(query).first()
            return TargetBuildView.of(row) if row else None

    def revoke(self, build_id: str, reason: str, by: str) -> BuildView:
        """Mark a build revoked (once: a second revoke keeps the first reason)."""
        with self._transaction("revoke the build") as session:
            row = _build_row(session, build_id, self.url_masked)
            if row.revoked_at is None:
                row.revoked_at, row.revoked_reason, row.revoked_by = _now(), reason, by
            return BuildView.of(row)

    def mark_deprecated(self, build_id: str) -> None:
        with self._transaction("record the deprecation") as session:
            row = _build_row(session, build_id, self.url_masked)
            row.deprecated_at = row.deprecated_at or _now()

    def set_pruning(self, build_id: str, journal: dict[str, Any] | None) -> None:
        """Write (or, with None, clear) the journal of a prune of this build."""
        with self._transaction("journal the prune") as session:
            _build_row(session, build_id, self.url_masked).pruning = plain(journal) if journal else None

    def mark_pruned(self, build_id: str) -> BuildView:
        """Its images are gone: keep the record, close the prune journal."""
        with self._transaction("record the prune") as session:
            row = _build_row(session, build_id, self.url_masked)
            row.pruned_at, row.pruning = row.pruned_at or _now(), None
            return BuildView.of(row)

    def children(self, build_id: str) -> list[BuildView]:
        """Builds with a target made from an image of `build_id`, oldest first."""
        query = (
            _builds()
            .where(Build.id.in_(select(TargetBuild.build_id).where(TargetBuild.parent_build_id == build_id)))
            .order_by(Build.started_at, Build.id)
        )
        with self._transaction("list child builds") as session:
            return [BuildView.of(b) for b in session.scalars(query)]

    def pruning_builds(self) -> list[BuildView]:
        """Builds with a prune journaled and not finished (killed halfway)."""
        with self._transaction("list unfinished prunes") as session:
            rows = session.scalars(_builds().where(Build.pruning.is_not(None)))
            return [BuildView.of(b) for b in rows if b.pruning]

    def forget_channel_moves(self, spec_name: str, build_id: str) -> int:
        """Delete the channel history entries of moves to a pruned build (moves from it to a
        build that stays are kept); returns how many went."""
        with self._transaction("forget the build's channel moves") as session:
            moves_to = (ChannelMove.spec_name == spec_name, ChannelMove.to_build == build_id)
            done = session.execute(delete(ChannelMove).where(*moves_to))
            return int(done.rowcount)  # type: ignore[attr-defined]

    def channel(self, spec_name: str, channel: str) -> ChannelView | None:
        with self._transaction("read the channel") as session:
            row = session.get(Channel, (spec_name, channel))
            return ChannelView.of(row) if row else None

    def channels(self, spec_name: str) -> list[ChannelView]:
        query = select(Channel).where(Channel.spec_name == spec_name).order_by(Channel.channel)
        with self._transaction("list channels") as session:
            return [ChannelView.of(row) for row in session.scalars(query)]

    def channel_history(
        self, spec_name: str, channel: str | None = None, limit: int = 50
    ) -> list[ChannelMoveView]:
        """Moves of the spec's channels (or one channel), newest first."""
        query = (
            select(ChannelMove)
            .where(ChannelMove.spec_name == spec_name)
            .order_by(ChannelMove.moved_at.desc(), ChannelMove.id.desc())
            .limit(limit)
        )
        if channel is not None:
            query = query.where(ChannelMove.channel == channel)
        with self._transaction("read the channel history") as session:
            return [ChannelMoveView.of(row) for row in session.scalars(query)]

    def begin_channel_move(self, spec_name: str, channel: str, journal: dict[str, Any]) -> ChannelView:
        """Write the journal of a move (`journal`: token, owner, from, to, by, state,
        places) before any place changes. Returns the channel as it was; CatalogError when
        another move of it is in progress (its owner is alive or on another host)."""
        journal = plain(journal)
        for attempt in range(2):
            try:
                with self._transaction("begin the channel move") as session:
                    row = session.get(Channel, (spec_name, channel), with_for_update=True)
                    if row is None:
                        row = Channel(spec_name=spec_name, channel=channel, places=[], pending=None)
                        session.add(row)
                    elif row.pending is not None:
                        raise _channel_busy(spec_name, channel, row.pending)
                    before = ChannelView.of(row)
                    row.pending = journal
                    return before
            except CatalogError as exc:
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")

    def mark_channel_move(self, spec_name: str, channel: str, token: str, state: str) -> None:
        """Record the state of this move (`applied`: every place holds its new value)."""
        with self._transaction("record the channel move's state") as session:
            row = session.get(Channel, (spec_name, channel), with_for_update=True)
            if row is None or not row.pending or row.pending.get("token") != token:
                raise CatalogError(f"channel {channel} of {spec_name} has no move {token} in progress")
            row.pending = {**row.pending, "state": state}

    def end_channel_move(
        self, spec_name: str, channel: str, token: str, outcome: str, detail: str | None = None
    ) -> ChannelView | None:
        """Close the move `token` and write it into the history: `moved` / `completed`
        point the channel at its new build and places; `rolled back` / `reverted` leave it
        where it was. Returns the channel now (None: it never pointed anywhere)."""
        with self._transaction("end the channel move") as session:
            row = session.get(Channel, (spec_name, channel), with_for_update=True)
            if row is None or not row.pending or row.pending.get("token") != token:
                raise CatalogError(f"channel {channel} of {spec_name} has no move {token} in progress")
            move, now = row.pending, _now()
            session.add(
                ChannelMove(
                    spec_name=spec_name,
                    channel=channel,
                    from_build=row.build_id,
                    to_build=move["to"],
                    outcome=outcome,
                    moved_by=move.get("by") or "?",
                    moved_at=now,
                    detail=detail,
                )
            )
            row.pending = None
            if outcome in ("moved", "completed"):
                row.build_id, row.moved_at = move["to"], now
                row.places = [{k: v for k, v in p.items() if k != "before"} for p in move["places"]]
            elif row.build_id is None:
                session.delete(row)
                return None
            return ChannelView.of(row)

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Session]:
        with self._translated_errors(doing), self._sessions.begin() as session:
            yield session

    @contextmanager
    def _translated_errors(self, doing: str) -> Iterator[None]:
        """Database errors as CatalogError naming the masked URL, with the driver's reason
        (never its statement or parameters) and no password."""
        try:
            yield
        except DBAPIError as exc:
            reason = scrub(str(exc.orig).strip(), self._url)
            raise CatalogError(
                f"could not {doing} (catalog {self.url_masked}): {reason}",
                hint=_hint(exc),
            ) from exc
        except SQLAlchemyError as exc:
            raise CatalogError(
                f"could not {doing} (catalog {self.url_masked}): {scrub(str(exc), self._url)}"
            ) from exc


def _create_engine(url: str) -> Engine:
    target = engine_url(url)
    if target.get_backend_name() != "sqlite":
        # pre-ping: a bake holds its pool for hours, past server restarts and idle timeouts
        return create_engine(target, pool_size=2, max_overflow=4, pool_pre_ping=True)
    if target.database and target.database != ":memory:":
        _create_private(target.database)
    # The timeout sets the busy handler as the file opens, before any statement of ours.
    engine = create_engine(target, connect_args={"timeout": _SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _sqlite_setup(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves, below
        for attempt in _busy_retries():
            with attempt:
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute("PRAGMA journal_mode = WAL")  # readers and one writer, across processes
                    cursor.execute("PRAGMA foreign_keys = ON")
                finally:
                    cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # Take the write lock up front: a read that later writes would otherwise fail at once
        # with SQLITE_BUSY when another process wrote meanwhile, busy timeout or not.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _busy_retries() -> Retrying:
    """SQLite answers "database is locked" at once, without waiting on its busy handler,
    while another process creates the file's WAL, recovers it, or removes it as its last
    connection closes (sqlite.org/wal.html, "Sometimes queries return SQLITE_BUSY"): such
    windows are short, so try again."""
    return Retrying(
        retry=retry_if_exception(_is_locked),
        wait=wait_random(0.01, 0.1),
        stop=stop_after_delay(_SQLITE_BUSY_MS / 1000),
        reraise=True,
    )


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _create_private(path: str) -> None:
    """The SQLite file holds the HMAC key: readable by its owner only (its -wal and -shm
    files take the same mode)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise CatalogError(
            f"could not create the catalog {path}: {exc.strerror}",
            hint="check the directory exists and is writable, or pass --catalog / IMGPIPE_CATALOG",
        ) from exc


def _channel_busy(spec_name: str, channel: str, pending: dict[str, Any]) -> CatalogError:
    owner = pending.get("owner") or {}
    return CatalogError(
        f"channel {channel} of {spec_name} is being moved to build {pending.get('to')} by process "
        f"{owner.get('pid', '?')} on {owner.get('host', '?')}",
        hint="wait for that move to end; if that process is gone from its host, run "
        f"`imgpipe channels {spec_name}` there to finish or revert it",
    )


def _lease_owner(row: Lease) -> Owner:
    try:
        return Owner(**row.owner)
    except TypeError:
        return Owner("", 0, None, "", "", "")  # unreadable: never judged gone, so it only expires


def _builds() -> Any:
    return select(Build).options(selectinload(Build.targets).selectinload(TargetBuild.artifacts))


def _owner(build: Build) -> Owner:
    return Owner(
        host=build.owner_host,
        pid=build.owner_pid,
        pid_start=build.owner_pid_start,
        boot=build.owner_boot,
        pidns=build.owner_pidns,
        machine=build.owner_machine,
    )


def _ending(status: str) -> Status:
    if status not in ENDINGS:
        raise ValueError(f"a build or target ends {', '.join(ENDINGS)}; not {status!r}")
    return Status(status)


def _hint(exc: DBAPIError) -> str | None:
    if exc.connection_invalidated or "connect" in str(exc.orig).lower():
        return "check the catalog URL (--catalog / IMGPIPE_CATALOG) and that the database is reachable"
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _build_row(session: Session, build_id: str, where: str) -> Build:
    row = session.get(Build, build_id, with_for_update=True)
    if row is None:
        raise CatalogError(f"no build {build_id!r} in the catalog {where}")
    return row
