"""A bake as the catalog sees it, the same for `imgpipe bake` and `imgpipe nightly`: under
the spec's lease, skipped when every target is up to date (with --if-changed), publishers
re-run alone when only publish settings changed, and recorded as it goes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from imgpipe.history import BakeRecorder, TargetStatus, target_status
from imgpipe.lease import SpecLease

if TYPE_CHECKING:
    from collections.abc import Callable

    from imgpipe.catalog import Catalog
    from imgpipe.events import EventSink
    from imgpipe.pipeline import BakeOptions, BakeResult
    from imgpipe.reuse import Reuse
    from imgpipe.spec.load import LoadedSpec


@dataclass
class Decision:
    """What --if-changed decided: bake these targets (republishing those in `reuse`), or
    nothing (`targets` empty) because each is up to date."""

    targets: tuple[str, ...]
    statuses: list[TargetStatus] = field(default_factory=list)
    reuse: dict[str, Reuse] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        return not self.targets

    def reasons(self) -> list[str]:
        return [f"{s.target} changed: {'; '.join(s.changes)}" for s in self.statuses if not s.up_to_date]


def decide(catalog: Catalog, loaded: LoadedSpec, targets: tuple[str, ...]) -> Decision:
    """Which targets need a bake. When only publish settings changed for every changed
    target, those are republished from their good build instead of baked."""
    from imgpipe.history import file_elsewhere
    from imgpipe.reuse import Reuse

    key = catalog.hmac_key()
    statuses = [target_status(catalog, loaded, t, key) for t in targets]
    changed = [s for s in statuses if not s.up_to_date]
    if not changed:
        return Decision((), statuses)
    if not all(s.republish for s in changed):
        return Decision(targets, statuses)
    reuse = {}
    for s in changed:
        good = catalog.get(str(s.build_id))
        assert good is not None
        good_target = good.target(s.target)
        assert good_target is not None
        host = file_elsewhere(good_target)
        if host is not None:  # its image file is on another build host: bake it here instead
            s.changes.append(f"its image file is on host {host}, so it is baked here again")
            return Decision(targets, statuses)
        reuse[s.target] = Reuse(good.id, good_target.record)
    return Decision(tuple(s.target for s in changed), statuses, reuse)


@dataclass
class RecordedBake:
    decision: Decision
    result: BakeResult | None  # None: nothing was baked


def recorded_bake(
    catalog: Catalog,
    loaded: LoadedSpec,
    options: BakeOptions,
    sink: EventSink | None,
    *,
    if_changed: bool,
    trigger: str = "bake",
    cancel: threading.Event | None = None,
    on_decision: Callable[[Decision], EventSink] | None = None,
) -> RecordedBake:
    """Take the spec's lease (LeaseHeld if another runner has it), decide, bake, record.
    The decision is made under the lease: a bake another runner just finished counts.
    `on_decision` (optional) sees the decision before the bake starts and returns the sink
    for the bake's events (how a CLI opens its progress display only when there is work)."""
    from imgpipe.lineage import with_parents
    from imgpipe.pipeline import bake

    with SpecLease(catalog, loaded.spec.name) as lease:
        loaded = with_parents(catalog, loaded)  # the parent as the channel names it now
        decision = decide(catalog, loaded, options.targets) if if_changed else Decision(options.targets)
        if on_decision is not None:
            sink = on_decision(decision)
        if decision.up_to_date:
            return RecordedBake(decision, None)
        assert sink is not None
        options = replace(options, targets=decision.targets, before_publish=lease.check)
        recorder = BakeRecorder(catalog, loaded, trigger=trigger)
        result = bake(loaded, options, sink, cancel=cancel, recorder=recorder, reuse=decision.reuse)
        return RecordedBake(decision, result)
