"""Generations of a cached bootstrap base. A stale base is never rebuilt in place: the new
one is a new file, `<distro>-<suite>-<key16>-<YYYYmmddTHHMMSSZ>.qcow2` (with its `.json`
sidecar), so VMs, overlays and kept builds backed by the old one keep working. The
first base of a recipe (and every base of older imgpipe versions) is
`<distro>-<suite>-<key16>.qcow2`: the oldest generation. The current base of a recipe is
its newest complete generation.

Who uses a base holds a shared flock on its file (holding_base, hold_base) for as long as
an overlay is backed by it. An old generation is removed only when no one holds it, no
journaled build's disk is backed by it, and under the recipe's lock (`<stem>.lock`, the
lock bootstraps take), so a bake choosing its base never races the removal."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from imgpipe.errors import BuildError
from imgpipe.paths import cache_dir, state_dir

if TYPE_CHECKING:
    from imgpipe.journal import Resources
    from imgpipe.sources.bootstrap import BootstrapRecipe

STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^(?P<stem>.+-[0-9a-f]{16})(?:-(?P<stamp>\d{8}T\d{6}Z))?\.qcow2$")
BASE_HOLD = "base-hold"  # journal kind of a build's shared lock on its base


def bases_dir() -> Path:
    return cache_dir() / "bases"


def recipe_stem(recipe: BootstrapRecipe, key: str) -> str:
    return f"{recipe.distro}-{recipe.suite}-{key[:16]}"


def first_path(recipe: BootstrapRecipe, key: str) -> Path:
    """The recipe's first (legacy) generation; its `.lock` is the recipe's lock."""
    return bases_dir() / f"{recipe_stem(recipe, key)}.qcow2"


def generations(stem: str, directory: Path | None = None) -> list[Path]:
    """The complete generations of a recipe, oldest first: the legacy file (complete once it
    exists: it was renamed into place), then each stamped file that has its sidecar."""
    directory = directory or bases_dir()
    found: list[tuple[str, Path]] = []
    for path in directory.glob(f"{stem}*.qcow2"):
        match = _NAME.match(path.name)
        if not match or match["stem"] != stem or not path.is_file():
            continue
        if match["stamp"] is None:
            found.append(("", path))
        elif path.with_suffix(".json").is_file():
            found.append((match["stamp"], path))
    return [path for _, path in sorted(found)]


def current_base(recipe: BootstrapRecipe, key: str) -> Path | None:
    """The newest complete generation of the recipe's base; None when there is none."""
    found = generations(recipe_stem(recipe, key))
    return found[-1] if found else None


def new_generation_path(recipe: BootstrapRecipe, key: str, now: datetime | None = None) -> Path:
    """Where a rebuilt base goes: stamped with the time, always after every existing one
    (a clock that went back must not make the new base older than the current one)."""
    stem = recipe_stem(recipe, key)
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    stamps = [m["stamp"] for p in bases_dir().glob(f"{stem}-*") if (m := _NAME.match(p.name)) and m["stamp"]]
    if stamps:
        latest = datetime.strptime(max(stamps), STAMP).replace(tzinfo=UTC)
        when = max(when, latest + timedelta(seconds=1))
    return bases_dir() / f"{stem}-{when.strftime(STAMP)}.qcow2"


@contextmanager
def recipe_lock(recipe: BootstrapRecipe, key: str) -> Iterator[None]:
    """Serialize choosing, building and removing the recipe's bases (threads and processes)."""
    from imgpipe.sources import cache_lock

    with cache_lock(first_path(recipe, key)):
        yield


def _lock_shared(path: Path) -> IO[bytes]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - held beyond this function on purpose
    except FileNotFoundError:
        raise BuildError(f"base image {path} is gone") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_SH)
        held, now = os.fstat(fh.fileno()), os.stat(path)
        if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):
            raise FileNotFoundError(path)
    except FileNotFoundError:
        fh.close()
        raise BuildError(f"base image {path} was removed as it was being taken") from None
    except BaseException:
        fh.close()
        raise
    return fh


@contextmanager
def holding_base(path: Path) -> Iterator[Path]:
    """Use `path` as a backing file: a shared flock on it for the duration, so
    remove_unused_bases keeps it. Take it while the base is known current (under
    recipe_lock) or be ready for BuildError if the base was removed meanwhile."""
    fh = _lock_shared(path)
    try:
        yield path
    finally:
        fh.close()


_HOLDS: dict[str, IO[bytes]] = {}
_HOLDS_LOCK = threading.Lock()


def hold_base(path: Path, resources: Resources) -> None:
    """holding_base for a build: held until `resources` unwinds (journaled as `base-hold`,
    so a kept build's journal still says which base its disks need)."""
    fh = _lock_shared(path)
    token = uuid.uuid4().hex
    with _HOLDS_LOCK:
        _HOLDS[token] = fh
    try:
        resources.track(BASE_HOLD, release_base_hold, token=token, path=str(path))
    except BaseException:
        release_base_hold(token)
        raise


def release_base_hold(token: str, path: str = "") -> None:
    """Cleaner of a `base-hold`: drop this process's lock; in another process (`imgpipe gc`
    after a kill -9) there is nothing to drop: the lock died with its process."""
    with _HOLDS_LOCK:
        fh = _HOLDS.pop(token, None)
    if fh is not None:
        fh.close()


def backing_chain(disk: Path, depth: int = 16) -> list[Path]:
    """The backing files under a qcow2, nearest first, read from the qcow2 headers (no
    qemu-img: it refuses a disk a running VM has open, which is exactly the case here)."""
    chain: list[Path] = []
    while len(chain) < depth:
        try:
            with open(disk, "rb") as fh:
                header = fh.read(20)
                if len(header) < 20 or header[:4] != b"QFI\xfb":
                    break
                offset, size = struct.unpack(">QI", header[8:20])
                if not offset or not 0 < size < 4096:
                    break
                fh.seek(offset)
                name = fh.read(size).decode(errors="replace")
        except OSError:
            break
        backing = Path(name) if os.path.isabs(name) else disk.parent / name
        chain.append(backing)
        disk = backing
    return chain


def _journaled_disks(record: dict[str, Any]) -> Iterator[Path]:
    for resource in record.get("resources", []):
        path = resource.get("args", {}).get("path")
        if not isinstance(path, str):
            continue
        where = Path(path)
        if where.is_dir():
            yield from where.glob("*.qcow2")
            yield from where.glob("*/*.qcow2")
        elif where.suffix == ".qcow2":
            yield where


def journal_references(journal_dir: Path | None = None) -> dict[Path, str]:
    """Bases that builds still in the journal need (running, kept for --on-error abort, or
    killed and not yet collected by `imgpipe gc`): realpath -> the build that needs it."""
    from imgpipe.journal import journals

    refs: dict[Path, str] = {}
    for orphan in journals(journal_dir or state_dir() / "journal"):
        build = f"build {orphan.record.get('build_id')} ({orphan.record.get('target')})"
        for resource in orphan.record.get("resources", []):
            if resource.get("kind") == BASE_HOLD and isinstance(resource.get("args", {}).get("path"), str):
                refs[Path(os.path.realpath(resource["args"]["path"]))] = build
        for disk in _journaled_disks(orphan.record):
            for backing in backing_chain(disk):
                refs[Path(os.path.realpath(backing))] = build
    return refs


@dataclass(frozen=True)
class BaseRemoval:
    """One old generation and what remove_unused_bases does with it."""

    path: Path
    remove: bool
    reason: str


def _old_generations(directory: Path) -> dict[str, list[Path]]:
    """stem -> its generations that are not the current one."""
    stems = {m["stem"] for p in directory.glob("*.qcow2") if (m := _NAME.match(p.name))}
    return {stem: found[:-1] for stem in sorted(stems) if len(found := generations(stem, directory)) > 1}


@contextmanager
def _try_lock(path: Path, flags: int) -> Iterator[bool]:
    """A non-blocking flock on `path`: yields whether it was taken (False: someone has it).
    Creates nothing: a missing lock file is one no one holds, a missing base one not to take."""
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        fh = None
    if fh is None:
        yield path.suffix == ".lock"
        return
    with fh:
        try:
            fcntl.flock(fh, flags | fcntl.LOCK_NB)
            taken = True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            taken = False
        yield taken  # closing the file drops the lock


def remove_unused_bases(log: Callable[[str], None], *, dry_run: bool = False) -> list[BaseRemoval]:
    """Remove every base generation that is not its recipe's current one and that nothing
    uses (no shared lock on it, no journaled disk backed by it). One code path for the dry
    run and the real one: each old generation gets one action, removed or kept with why."""
    directory = bases_dir()
    refs = journal_references()
    actions: list[BaseRemoval] = []
    for stem, old in _old_generations(directory).items():
        with _try_lock(directory / f"{stem}.lock", fcntl.LOCK_EX) as recipe_free:
            if not recipe_free:
                actions += [BaseRemoval(p, False, "its recipe is being bootstrapped or chosen") for p in old]
                continue
            *older, current = generations(stem, directory)  # again, now that no one can change it
            actions += [_remove_one(path, current, refs, dry_run) for path in older]
    for action in actions:
        verb = ("would remove" if dry_run else "removed") if action.remove else "kept"
        log(f"base {action.path.name}: {verb} ({action.reason})")
    return actions


def _remove_one(path: Path, current: Path, refs: dict[Path, str], dry_run: bool) -> BaseRemoval:
    if (user := refs.get(Path(os.path.realpath(path)))) is not None:
        return BaseRemoval(
            path, False, f"{user} in the journal has a disk backed by it; `imgpipe gc` frees it"
        )
    with _try_lock(path, fcntl.LOCK_EX) as unused:
        if not unused:
            return BaseRemoval(path, False, "in use: a build or VM holds it")
        if not dry_run:  # removed while the exclusive lock is ours: no one can take it now
            path.unlink()
            path.with_suffix(".json").unlink(missing_ok=True)
    return BaseRemoval(path, True, f"superseded by {current.name} and unused")
