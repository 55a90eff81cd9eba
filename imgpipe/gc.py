"""`imgpipe gc` as plan, then apply: one function decides what would be removed and why,
so `--dry-run` prints exactly what a real run would do and changes nothing anywhere.
Two sources: this machine's journal (every build's temporary resources, by age), and the
sweeps of an EC2 region or an S3 bucket for what a build tagged when its journal is gone.
The CLI only renders the plans."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from imgpipe.core.buildid import build_started
from imgpipe.journal import CleanupFailure, Orphan, clean_record, journals

SWEEP_MIN_AGE_H = 6.0  # a region sweep leaves younger builds alone unless told otherwise


@dataclass(frozen=True)
class JournalAction:
    """One journal entry (one target of one build) and what gc does with it."""

    orphan: Orphan
    remove: bool
    reason: str

    @property
    def build_id(self) -> str:
        return str(self.orphan.record.get("build_id"))

    @property
    def target(self) -> str:
        return str(self.orphan.record.get("target"))

    @property
    def resources(self) -> list[dict[str, Any]]:
        return list(self.orphan.record.get("resources", []))


@dataclass
class GcPlan:
    journal: list[JournalAction] = field(default_factory=list)

    @property
    def removals(self) -> list[JournalAction]:
        return [a for a in self.journal if a.remove]

    @property
    def kept(self) -> list[JournalAction]:
        return [a for a in self.journal if not a.remove]


def plan_journal(
    journal_dir: Path,
    build_id: str | None = None,
    older_than_s: float | None = None,
    now: float | None = None,
) -> GcPlan:
    """Which journal entries a gc removes: those whose owner process is gone, not kept for
    debugging (unless named with `build_id`), and older than `older_than_s` if given."""
    now = time.time() if now is None else now
    plan = GcPlan()
    for orphan in journals(journal_dir):
        rec = orphan.record
        if build_id is not None and rec.get("build_id") != build_id:
            continue
        started = build_started(str(rec.get("build_id")))
        if started is None:
            started = orphan.path.stat().st_mtime
        age = now - started
        if orphan.alive:
            plan.journal.append(
                JournalAction(orphan, False, f"its bake is still running (pid {rec.get('pid')})")
            )
        elif rec.get("kept") and build_id is None:
            plan.journal.append(
                JournalAction(
                    orphan, False, f"kept by --on-error abort; remove with --build {rec['build_id']}"
                )
            )
        elif older_than_s is not None and age < older_than_s:
            plan.journal.append(JournalAction(orphan, False, f"younger than {older_than_s / 3600:g} h"))
        else:
            reason = "named with --build" if build_id is not None else "its bake is gone"
            plan.journal.append(JournalAction(orphan, True, reason))
    return plan


def apply_journal(plan: GcPlan) -> tuple[list[JournalAction], list[CleanupFailure]]:
    """Remove exactly the plan's removals; an entry whose cleanup failed stays journaled."""
    removed, failures = [], []
    for action in plan.removals:
        errs = clean_record(action.orphan.record)
        failures += errs
        if not errs:
            action.orphan.path.unlink(missing_ok=True)
            removed.append(action)
    return removed, failures


def running_builds(journal_dir: Path) -> set[str]:
    """Builds whose bake still runs on this machine: never swept."""
    return {str(o.record.get("build_id")) for o in journals(journal_dir) if o.alive}


@dataclass
class Sweep:
    """What one region or bucket holds of old builds, found by their tags."""

    where: str  # `us-east-1`, `s3://bucket/prefix/`
    region: str | None
    found: list[Any]  # imgpipe.aws.sweep.Leftover
    client: Any
    remover: Callable[[Any, list[Any]], None]

    def apply(self) -> None:
        """Remove exactly what was found; a failure is a BuildError naming the AWS code."""
        from imgpipe.aws.errors import step

        if self.found:
            with step("gc", self.region or "", build=True):
                self.remover(self.client, self.found)


def _sweep(
    where: str, region: str | None, service: str, find: Callable[[Any], list[Any]], remover: Any
) -> Sweep:
    from imgpipe.aws.errors import step
    from imgpipe.aws.session import client_for

    with step("gc", region or "", build=True):
        client = client_for(service, region)  # type: ignore[arg-type]
        return Sweep(where, region, find(client), client, remover)


def plan_region_sweeps(regions: list[str], older_than_h: float, journal_dir: Path) -> Iterator[Sweep]:
    """One sweep per EC2 region, planned when reached: instances, groups, key pairs,
    unpublished AMIs and snapshots, import tasks of builds older than `older_than_h`."""
    from imgpipe.aws.sweep import find_leftovers, remove_leftovers

    running = running_builds(journal_dir)
    for region in regions:
        find = partial(find_leftovers, older_than=older_than_h * 3600, skip_builds=running)
        yield _sweep(region, region, "ec2", find, remove_leftovers)


def plan_bucket_sweeps(
    buckets: list[str], region: str | None, older_than_h: float, journal_dir: Path
) -> Iterator[Sweep]:
    """One sweep per `BUCKET[/PREFIX/]`: aws-import objects and unfinished uploads."""
    from imgpipe.aws.bucketsweep import find_bucket_leftovers, parse_bucket, remove_bucket_leftovers

    running = running_builds(journal_dir)
    for value in buckets:
        bucket, prefix = parse_bucket(value)
        find = partial(
            find_bucket_leftovers,
            bucket=bucket,
            prefix=prefix,
            older_than=older_than_h * 3600,
            skip_builds=running,
        )
        yield _sweep(f"s3://{bucket}/{prefix}", region, "s3", find, remove_bucket_leftovers)
