"""`imgpipe nightly`: the unattended run over a directory of specs. Load every spec,
refresh stale bases, bake each spec that is due (its schedule) and changed (the catalog),
skip the rest, and say for each what it decided and why. One spec's failure never stops
the others; a spec that keeps failing is disabled in the catalog."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.errors import ImgpipeError, Interrupted, as_imgpipe_error
from imgpipe.events import Event, EventSink

if TYPE_CHECKING:
    from imgpipe.catalog import Catalog
    from imgpipe.spec.load import LoadedSpec


class Result(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the bake failed, or the spec could not be loaded or claimed
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"


@dataclass
class SpecRun:
    """One spec's line in the summary."""

    path: str
    name: str = ""
    decision: str = "skip"  # "bake", "republish", "skip"
    why: str = ""
    result: Result = Result.SKIPPED
    seconds: float = 0.0
    build_id: str | None = None
    images: dict[str, str] = field(default_factory=dict)  # target -> image id or file
    errors: dict[str, str] = field(default_factory=dict)  # target (or "spec") -> message
    disabled: str | None = None  # set when this run disabled the spec
    pruned: list[str] = field(default_factory=list)  # builds its retention policy removed

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "result": self.result.value}


@dataclass(frozen=True)
class NightlyOptions:
    output: Path
    var_files: tuple[Path, ...] = ()  # for every spec, before its own vars/<spec>.yml
    parallel: int = 1  # specs baked at once
    all_specs: bool = False  # ignore schedules
    now: datetime | None = None  # for tests of schedules; default: the clock


@dataclass
class NightlyReport:
    started_at: str
    host: str
    catalog: str
    specs: list[SpecRun] = field(default_factory=list)
    bases: list[dict[str, Any]] = field(default_factory=list)  # what refreshing the bases did
    finished_at: str = ""
    interrupted: bool = False

    @property
    def failed(self) -> list[SpecRun]:
        return [s for s in self.specs if s.result is Result.FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "host": self.host,
            "catalog": self.catalog,
            "interrupted": self.interrupted,
            "bases": self.bases,
            "specs": [s.to_json() for s in self.specs],
            "counts": {r.value: sum(s.result is r for s in self.specs) for r in Result},
        }


class SpecSink:
    """A spec's bake events, named `spec/target`: several specs share one display."""

    def __init__(self, sink: EventSink, spec: str) -> None:
        self.sink, self.spec = sink, spec

    def emit(self, event: Event) -> None:
        self.sink.emit(Event(f"{self.spec}/{event.target}", event.kind, event.data, event.time))


def run_nightly(
    specs: Sequence[Path],
    catalog: Catalog,
    options: NightlyOptions,
    sink: EventSink,
    log: Callable[[str], None],
    cancel: threading.Event,
) -> NightlyReport:
    """Decide and bake every spec; never raises for one spec's problem. On cancel, the
    running bakes stop and clean up, the specs not started are skipped."""
    now = options.now or datetime.now(UTC)
    report = NightlyReport(now.isoformat(timespec="seconds"), socket.gethostname(), catalog.url_masked)
    loaded: list[tuple[SpecRun, LoadedSpec]] = []
    for path in specs:
        run = SpecRun(str(path))
        report.specs.append(run)
        spec = _load(path, options, run, catalog)
        if spec is not None:
            loaded.append((run, spec))
    loaded = _without_cycles(loaded)
    due = [(run, spec) for run, spec in loaded if _due(run, spec, catalog, options, now)]
    with ThreadPoolExecutor(max_workers=max(1, options.parallel)) as pool:
        futures: list[Future[None]] = []
        try:
            report.bases = _refresh_bases([spec for _, spec in due], log, cancel)
            _bake_parents_first(
                due,
                lambda run, spec: pool.submit(_bake_one, run, spec, catalog, options, sink, cancel, now),
                futures,
                cancel,
            )
        except KeyboardInterrupt:
            cancel.set()  # the running bakes stop and clean up; the queued ones skip
            for f in futures:
                f.exception()
    for run, spec in loaded if not cancel.is_set() else []:
        _prune(run, spec, catalog, log)  # retention, after the bakes
    report.interrupted = cancel.is_set()
    report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    return report


def _without_cycles(loaded: list[tuple[SpecRun, LoadedSpec]]) -> list[tuple[SpecRun, LoadedSpec]]:
    """The specs minus those whose `source.parent` chain loops back (reported failed, each
    with the file and line of its source.parent) and those built on one of them (skipped)."""
    from imgpipe.lineage import build_order, parent_spec

    by_name = {spec.spec.name: (run, spec) for run, spec in reversed(loaded)}  # the first of a name
    order, cycles = build_order({name: parent_spec(spec) for name, (_, spec) in by_name.items()})
    for cycle in cycles:
        loop = " -> ".join([*cycle, cycle[0]])
        for name in cycle:
            run, spec = by_name[name]
            pos = spec.doc.position(("source", "parent"))
            run.result, run.why = Result.FAILED, "invalid spec"
            run.errors = {
                "spec": f"{pos}: source.parent: a cycle of parents: {loop} (each built on the next)"
            }
    in_cycle = {name for cycle in cycles for name in cycle}
    for name, (run, spec) in by_name.items():
        if name not in order and name not in in_cycle:
            run.why = f"skipped: it is built on {parent_spec(spec)}, whose parents form a cycle"
    keep = set(order)
    return [(run, spec) for run, spec in loaded if spec.spec.name in keep]


def _bake_parents_first(
    due: list[tuple[SpecRun, LoadedSpec]],
    submit: Callable[[SpecRun, LoadedSpec], Future[None]],
    futures: list[Future[None]],
    cancel: threading.Event,
) -> None:
    """Start each spec once the spec it is built on, when that is baked in this run too,
    has finished (independent specs start at once); skip the children of a failed parent.
    Appends to `futures` as it goes and returns when every started bake has finished."""
    from imgpipe.lineage import parent_spec

    runs = {spec.spec.name: run for run, spec in due}
    started: dict[str, Future[None]] = {}
    broken: dict[str, str] = {}  # spec -> why its children are skipped
    waiting = list(due)
    while waiting or not all(f.done() for f in futures):
        for run, spec in list(waiting):
            name, parent = spec.spec.name, parent_spec(spec)
            if parent in runs and parent != name and not cancel.is_set():
                if parent not in broken and not (parent in started and started[parent].done()):
                    continue  # its parent is still to bake
                if parent not in broken and runs[parent].result in (Result.FAILED, Result.INTERRUPTED):
                    broken[parent] = f"the bake of its parent spec {parent} {runs[parent].result.value}"
                if parent in broken:
                    waiting = [w for w in waiting if w[0] is not run]
                    run.why = f"skipped: {broken[parent]}"
                    broken[name] = f"its parent spec {parent} was skipped ({broken[parent]})"
                    continue
            waiting = [w for w in waiting if w[0] is not run]
            started[name] = submit(run, spec)
            futures.append(started[name])
        time.sleep(0.2)


def _load(path: Path, options: NightlyOptions, run: SpecRun, catalog: Catalog) -> LoadedSpec | None:
    """The spec with its unattended inputs (the run's var files, then its own
    vars/<spec>.yml, over the environment), its name claimed; None when that fails."""
    from imgpipe.history import spec_origin
    from imgpipe.roles import reference_problems
    from imgpipe.spec import load_spec
    from imgpipe.spec.discover import default_var_files

    try:
        loaded = load_spec(path, [*options.var_files, *default_var_files(path)], [])
        run.name = loaded.spec.name
        problems = reference_problems(loaded)
        if problems:
            raise ImgpipeError("\n".join([f"{loaded.path}: invalid spec", *("  " + p for p in problems)]))
        catalog.claim_spec(loaded.spec.name, spec_origin(loaded.path))
    except ImgpipeError as exc:
        run.name = run.name or path.stem
        run.result, run.why, run.errors = Result.FAILED, "invalid spec", {"spec": str(exc)}
        return None
    return loaded


def _due(run: SpecRun, loaded: LoadedSpec, catalog: Catalog, options: NightlyOptions, now: datetime) -> bool:
    from imgpipe.schedule.due import is_due, next_due

    state = catalog.spec_state(loaded.spec.name)
    if state is not None and state.disabled_at is not None:
        run.why = (
            f"disabled since {state.disabled_at:%Y-%m-%d %H:%M} UTC ({state.disabled_reason}); "
            f"`imgpipe nightly --enable {loaded.spec.name}` bakes it again"
        )
        return False
    schedule = loaded.spec.schedule
    if options.all_specs or schedule is None:
        return True
    last = state.nightly_checked_at if state else None
    if is_due(schedule, last, now):
        return True
    try:
        run.why = f"not due: next at {next_due(schedule, now):%Y-%m-%d %H:%M %Z} ({schedule.cron})"
    except Exception as exc:  # noqa: BLE001 - one spec's schedule never stops the others
        run.why = f"not due: its schedule {schedule.cron!r} has no next time ({exc})"
    return False


def _refresh_bases(
    due: list[LoadedSpec], log: Callable[[str], None], cancel: threading.Event
) -> list[dict[str, Any]]:
    """Rebuild each stale base the due specs use, once, before any bake takes it. A base
    that can't be rebuilt is reported; the bakes go on with the base they have."""
    from imgpipe.sources.freshness import refresh_stale_bases

    try:
        return [refresh.to_json() for refresh in refresh_stale_bases(due, log, cancel)]
    except Interrupted:
        raise KeyboardInterrupt from None
    except ImgpipeError as exc:
        log(f"could not refresh the bases: {exc}")
        return [{"error": str(exc)}]


def _bake_one(
    run: SpecRun,
    loaded: LoadedSpec,
    catalog: Catalog,
    options: NightlyOptions,
    sink: EventSink,
    cancel: threading.Event,
    now: datetime,
) -> None:
    from imgpipe.lease import LeaseHeld
    from imgpipe.pipeline import BakeOptions
    from imgpipe.recorded_bake import Decision, recorded_bake

    start = time.monotonic()
    name = loaded.spec.name
    if cancel.is_set():
        run.why = "interrupted before it started"
        return

    def decided(decision: Decision) -> EventSink:
        catalog.mark_nightly_checked(name, now)
        if decision.up_to_date:
            ids = ", ".join(dict.fromkeys(str(s.build_id) for s in decision.statuses))
            run.why = f"unchanged since {ids}"
        else:
            run.decision = "republish" if decision.reuse else "bake"
            run.why = "; ".join(decision.reasons())
        return SpecSink(sink, name)

    options_ = BakeOptions(options.output, tuple(loaded.spec.targets), loaded.variables)
    try:
        baked = recorded_bake(
            catalog,
            loaded,
            options_,
            None,
            if_changed=True,
            trigger="nightly",
            cancel=cancel,
            on_decision=decided,
        )
    except LeaseHeld as exc:
        run.why = f"another runner has it: {exc.message}"
        return
    except BaseException as exc:  # noqa: BLE001 - one spec's failure never stops the others
        err = as_imgpipe_error(exc)
        run.result = Result.INTERRUPTED if isinstance(err, Interrupted) else Result.FAILED
        run.errors = {"spec": str(err)}
        return
    finally:
        run.seconds = round(time.monotonic() - start, 1)
    result = baked.result
    if result is None:
        return
    run.build_id = result.build_id
    run.images = {r.target: str(r.artifact_id) for r in result.records if r.ok}
    run.errors = {t: str(e) for t, e in result.errors.items()}
    if any(isinstance(e, Interrupted) for e in result.errors.values()):
        run.result = Result.INTERRUPTED
        return
    run.result = Result.SUCCEEDED if result.ok else Result.FAILED
    try:
        state = catalog.count_nightly_result(
            name, failed=not result.ok, disable_after=loaded.spec.rebuild.disable_after_failures
        )
    except ImgpipeError as exc:
        run.errors["catalog"] = str(exc)
        return
    if state.disabled_at is not None and not result.ok:
        run.disabled = state.disabled_reason


def _prune(run: SpecRun, loaded: LoadedSpec, catalog: Catalog, log: Callable[[str], None]) -> None:
    """Remove the builds the spec's retention policy lets go. A prune that fails is in the
    spec's errors (the next run tries again); it never makes the bake a failure."""
    if loaded.spec.retention is None:
        return
    from imgpipe.retention import Pruner

    try:
        report = Pruner(catalog, log=lambda line: log(f"{loaded.spec.name}: prune: {line}")).run_loaded(
            loaded
        )
    except Exception as exc:  # noqa: BLE001 - the bakes are done; only the prune failed
        run.errors["prune"] = str(as_imgpipe_error(exc))
        return
    run.pruned = report.removed()
    if report.failures:
        run.errors["prune"] = "; ".join(report.failures)
