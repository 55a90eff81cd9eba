"""`imgpipe gc` as plan, then apply: one function decides what would be removed and why,
so `--dry-run` prints exactly what a real run would do and changes nothing anywhere."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgpipe.journal import CleanupFailure, Orphan, clean_record, journals


def build_started(build_id: str) -> float | None:
    """Seconds since the epoch from `20261127T053122Z-dc0ed0`; None if not an imgpipe id."""
    try:
        return float(calendar.timegm(time.strptime(build_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


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
