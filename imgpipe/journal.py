"""The on-disk journal of temporary resources.

Each resource is written down the moment it exists, together with the name of
the module-level function that removes it, so the same record drives cleanup
in-process (ExitStack order) and `imgpipe gc` after a kill -9."""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe.errors import BuildError

Cleaner = Callable[..., None]


def _qualified(fn: Cleaner) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _resolve(name: str) -> Cleaner:
    module, _, attr = name.partition(":")
    if not module.startswith("imgpipe."):
        raise ValueError(f"refusing cleaner outside imgpipe: {name}")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def _process_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class CleanupFailure:
    resource: dict[str, Any]
    error: str

    def __str__(self) -> str:
        return f"could not remove {self.resource['kind']} {self.resource['args']}: {self.error}"


class Resources:
    """Temporary resources of one target build, cleaned up in reverse order."""

    def __init__(self, journal_dir: Path, build_id: str, target: str) -> None:
        journal_dir.mkdir(parents=True, exist_ok=True)
        self.path = journal_dir / f"{build_id}.{target}.json"
        self._lock = threading.Lock()
        self._record: dict[str, Any] = {
            "build_id": build_id,
            "target": target,
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "kept": False,
            "resources": [],
        }
        self._next = 0

    def track(self, kind: str, cleaner: Cleaner, **args: Any) -> int:
        """Record a resource that now exists; `cleaner(**args)` must remove it idempotently."""
        with self._lock:
            self._next += 1
            self._record["resources"].append(
                {"id": self._next, "kind": kind, "cleaner": _qualified(cleaner), "args": args}
            )
            _write_atomic(self.path, self._record)
            return self._next

    def release(self, resource_id: int) -> None:
        """Forget a resource that was removed or handed over (e.g. a published image)."""
        with self._lock:
            self._record["resources"] = [r for r in self._record["resources"] if r["id"] != resource_id]
            _write_atomic(self.path, self._record)

    def close_kind(self, kind: str) -> None:
        """Remove every resource of one kind now (e.g. a tunnel no longer needed), newest
        first; raises BuildError if one can't be removed, leaving it journaled."""
        with self._lock:
            chosen = [r for r in self._record["resources"] if r["kind"] == kind]
        failures = clean_record({"resources": chosen})
        with self._lock:
            gone = {r["id"] for r in chosen} - {f.resource["id"] for f in failures}
            self._record["resources"] = [r for r in self._record["resources"] if r["id"] not in gone]
            _write_atomic(self.path, self._record)
        if failures:
            raise BuildError("; ".join(str(f) for f in failures))

    def keep(self) -> None:
        """Leave everything in place for debugging; `imgpipe gc --build` removes it later."""
        with self._lock:
            self._record["kept"] = True
            _write_atomic(self.path, self._record)

    @property
    def kept(self) -> bool:
        return bool(self._record["kept"])

    def close(self) -> list[CleanupFailure]:
        """Remove every resource, newest first; keep going past failures and report them."""
        if self.kept:
            return []
        failures = clean_record(self._record)
        with self._lock:
            if failures:
                self._record["resources"] = [f.resource for f in reversed(failures)]
                _write_atomic(self.path, self._record)
            else:
                self.path.unlink(missing_ok=True)
        return failures


def clean_record(record: dict[str, Any]) -> list[CleanupFailure]:
    failures = []
    for res in reversed(record["resources"]):
        try:
            _resolve(res["cleaner"])(**res["args"])
        except Exception as exc:  # noqa: BLE001 - cleanup must go on and report
            failures.append(CleanupFailure(res, f"{type(exc).__name__}: {exc}"))
    return failures


@dataclass
class Orphan:
    path: Path
    record: dict[str, Any]

    @property
    def alive(self) -> bool:
        pid, start = self.record.get("pid"), self.record.get("pid_start")
        return pid is not None and _process_start(pid) == start and pid != os.getpid()


def journals(journal_dir: Path) -> list[Orphan]:
    out = []
    for path in sorted(journal_dir.glob("*.json")):
        try:
            out.append(Orphan(path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return out


def collect(journal_dir: Path, build_id: str | None = None) -> tuple[list[Orphan], list[CleanupFailure]]:
    """Remove resources of dead builds (or of one named build, kept or not): `imgpipe gc`'s
    plan, applied."""
    from imgpipe.gc import apply_journal, plan_journal

    removed, failures = apply_journal(plan_journal(journal_dir, build_id))
    return [action.orphan for action in removed], failures


def remove_path(path: str) -> None:
    """Cleaner for files and directories. An entry that vanishes meanwhile (an ssh control
    master removing its socket as it exits) is gone as wanted, not a failure."""
    import shutil

    def vanished_is_fine(
        _func: object, _name: str, exc_info: tuple[type[BaseException], BaseException, object]
    ) -> None:
        if not issubclass(exc_info[0], FileNotFoundError):
            raise exc_info[1]

    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, onerror=vanished_is_fine)
    else:
        p.unlink(missing_ok=True)
