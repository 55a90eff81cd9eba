"""A prune's plan and its outcome as data: what each build's fate is and why, the steps
of each removal (JSON, as the catalog journals them), and one line describing a step,
the same in a dry run's plan and a real run's progress."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from imgpipe.retention.policy import Action


@dataclass
class BuildPlan:
    build_id: str
    started_at: str
    status: str
    action: Action
    reasons: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)  # what a real run does, in order
    notes: list[str] = field(default_factory=list)  # what of it stays, and why
    resumed: bool = False  # an interrupted prune being finished

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "action": self.action.value, "steps": [describe(s) for s in self.steps]}


@dataclass
class SpecPlan:
    spec: str
    retention: dict[str, Any]
    builds: list[BuildPlan]

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "retention": self.retention, "builds": [b.to_json() for b in self.builds]}


@dataclass
class PruneReport:
    dry_run: bool
    resumed: list[BuildPlan] = field(default_factory=list)
    specs: list[SpecPlan] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # spec -> why it was not pruned
    done: list[str] = field(default_factory=list)  # every step done, one line each
    failures: list[str] = field(default_factory=list)  # what could not be done
    pruned: list[str] = field(default_factory=list)  # builds whose removal completed

    def removed(self, spec: str | None = None) -> list[str]:
        """The builds removed (in a dry run: to be removed), oldest first."""
        plans = [p for p in self.specs if spec is None or p.spec == spec]
        planned = [b.build_id for p in plans for b in reversed(p.builds) if b.action is Action.REMOVE]
        return planned if self.dry_run else [b for b in planned if b in self.pruned]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "dry_run": self.dry_run,
            "ok": not self.failures,
            "resumed": [b.to_json() for b in self.resumed],
            "specs": [p.to_json() for p in self.specs],
            "skipped": self.skipped,
            "failures": self.failures,
            "pruned": self.pruned,
        }


def describe(step: dict[str, Any]) -> str:
    """One line per step, the same in a dry run's plan and a real run's progress."""
    do = step["do"]
    if do == "deregister":
        return f"AMI {step['image_id']} in {step['region']}: reset launch permissions, deregister"
    if do == "delete-snapshot":
        return f"snapshot {step['snapshot_id']} in {step['region']}: delete"
    if do == "deprecate":
        return f"AMI {step['image_id']} in {step['region']}: set an EC2 deprecation time"
    if do == "remove-file":
        return f"file {step['path']}"
    if do == "remove-dir":
        return f"directory {step['path']} (sums, logs, manifest)"
    return f"its channel history entries in the catalog ({step.get('count', 0)})"
