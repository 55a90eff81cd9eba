"""`imgpipe prune`: plan, then apply. The plan says, per build of each spec with a
`retention` policy, keep (and why), deprecate, or remove, and for a removal every step:
each AMI in each region (launch permissions reset, deregistered), each snapshot no other
AMI uses, each recorded file, the build directory, its channel history entries. A dry run
prints the plan; a real run executes exactly it.

A removal is journaled in the catalog before its first step (`Build.pruning`: the steps,
how many are done, the owner process) and each step is idempotent, so a prune killed
halfway is finished by the next one, before it plans anything; the build is marked
pruned (the record stays) after its last step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.catalog.owner import Owner
from imgpipe.retention import aws, local
from imgpipe.retention.plan import BuildPlan, PruneReport, SpecPlan, describe
from imgpipe.retention.policy import Action, Child, Decision, Facts, Image, decide

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.catalog import BuildView, Catalog
    from imgpipe.spec.load import LoadedSpec
    from imgpipe.spec.model import Retention

_ALL = 1_000_000


class Pruner:
    """Prunes specs of one catalog. `session_for(profile)` makes the AWS session of a
    profile (tests pass one with hooks); `log` gets progress lines."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
        session_for: Callable[[str | None], AwsSession] | None = None,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.catalog, self.dry_run, self.log = catalog, dry_run, log
        self.now = now or datetime.now(UTC)
        self._session_for = session_for
        self._sessions: dict[str | None, AwsSession] = {}

    def client(self, service: str, profile: str | None, region: str) -> Any:
        if profile not in self._sessions:
            if self._session_for is not None:
                self._sessions[profile] = self._session_for(profile)
            else:
                from imgpipe.aws.session import AwsSession, AwsSettings

                self._sessions[profile] = AwsSession(AwsSettings(profile=profile))
        return self._sessions[profile].client(service, region)

    def run(self, names: list[str] | None = None) -> PruneReport:
        """Finish interrupted prunes, then plan (and unless a dry run, apply) each named spec,
        or each spec in the catalog with a retention policy. Never raises for one spec."""
        from imgpipe.errors import ImgpipeError

        report = PruneReport(self.dry_run)
        busy = self.resume(report, names)
        for name in names or [s.name for s in self.catalog.specs()]:
            try:
                found = self.policy(name, report, named=bool(names))
                if found is None:
                    continue
                plan = self.plan(name, *found, busy=busy)
            except ImgpipeError as exc:
                report.skipped[name] = str(exc).splitlines()[0]
                report.failures.append(f"{name}: {report.skipped[name]}")
                continue
            report.specs.append(plan)
            if not self.dry_run:
                self.apply(plan, report)
        return report

    def run_loaded(self, loaded: LoadedSpec) -> PruneReport:
        """Prune one spec already loaded (nightly): its policy from `loaded`."""
        from imgpipe.errors import ImgpipeError

        report = PruneReport(self.dry_run)
        name = loaded.spec.name
        busy = self.resume(report, [name])
        if loaded.spec.retention is None:
            return report
        try:
            plan = self.plan(name, loaded.spec.retention, loaded, busy=busy)
        except ImgpipeError as exc:
            report.failures.append(f"{name}: {str(exc).splitlines()[0]}")
            return report
        report.specs.append(plan)
        if not self.dry_run:
            self.apply(plan, report)
        return report

    def policy(self, name: str, report: PruneReport, named: bool) -> tuple[Retention, LoadedSpec] | None:
        """The spec's retention policy, from the spec file of its newest build."""
        from imgpipe.errors import ImgpipeError
        from imgpipe.spec import load_spec

        newest = self.catalog.builds(name, limit=1)
        if not newest:
            report.skipped[name] = "no builds in the catalog"
            return None
        path = Path(newest[0].spec_path)
        try:
            loaded = load_spec(path)
        except ImgpipeError as exc:
            report.skipped[name] = f"can't read its spec {path}: {str(exc).splitlines()[0]}"
            self.log(f"{name}: skipped: {report.skipped[name]}")
            if named:
                report.failures.append(f"{name}: {report.skipped[name]}")
            return None
        if loaded.spec.name != name:
            report.skipped[name] = f"its spec {path} now names {loaded.spec.name}"
            return None
        if loaded.spec.retention is None:
            report.skipped[name] = f"no retention policy in {path}: every build is kept"
            return None
        return loaded.spec.retention, loaded

    def plan(
        self, name: str, retention: Retention, loaded: LoadedSpec | None, busy: dict[str, str] | None = None
    ) -> SpecPlan:
        builds = self.catalog.builds(name, limit=_ALL)
        live = [b for b in builds if b.pruned_at is None]
        profiles = {b.id: _profiles(b, loaded) for b in live}
        places = {(profile, image.region) for b in live for image, profile in profiles[b.id].items()}
        facts = self._ask_ec2(name, places)
        decisions = decide(
            builds,
            retention,
            Facts(
                now=self.now,
                channels=self._channels(name),
                children={b.id: self._children(b.id) for b in live},
                in_use=facts.in_use,
                keep_tagged=facts.keep_tagged,
                busy={**(busy or {}), **_elsewhere(live)},
            ),
        )
        by_id = {b.id: b for b in live}
        plans = [self._build_plan(d, by_id[d.build_id], profiles[d.build_id]) for d in decisions]
        removals = [p for p in reversed(plans) if p.action is Action.REMOVE]  # applied oldest first
        gone = {
            (profiles[p.build_id][i], i.region, i.image_id) for p in removals for i in profiles[p.build_id]
        }
        for index, plan in enumerate(removals):
            build = by_id[plan.build_id]
            later = {
                snap
                for p in removals[index + 1 :]
                for image, profile in profiles[p.build_id].items()
                for snap in _all_snaps(image, profile, facts)
            }
            plan.steps = self._removal_steps(build, profiles[build.id], facts, gone, later, plan.notes)
        spec_policy = retention.model_dump(mode="json")
        return SpecPlan(name, spec_policy, plans)

    def _ask_ec2(self, name: str, places: set[tuple[str | None, str]]) -> aws.Ec2Facts:
        """What is in use and tagged to be kept; unknown, nothing of the spec is removed."""
        if not places:
            return aws.Ec2Facts()  # local images only: no AWS credentials needed
        from imgpipe.channels import _describe
        from imgpipe.errors import PublishError

        try:
            return aws.gather(self.client, places)
        except Exception as exc:
            raise PublishError(
                f"could not ask EC2 which AMIs are in use ({_describe(exc)}): nothing of {name} was pruned",
                hint="check the AWS credentials and their ec2:Describe* permissions",
            ) from exc

    def _build_plan(self, decision: Decision, build: BuildView, images: dict[Image, str | None]) -> BuildPlan:
        plan = BuildPlan(
            build.id,
            build.started_at.isoformat(timespec="seconds"),
            _state(build),
            decision.action,
            list(decision.reasons),
        )
        if plan.action is Action.DEPRECATE:
            plan.steps = [
                {"do": "deprecate", "region": i.region, "image_id": i.image_id, "profile": profile}
                for i, profile in images.items()
            ]
        return plan

    def _removal_steps(
        self,
        build: BuildView,
        images: dict[Image, str | None],
        facts: aws.Ec2Facts,
        gone: set[tuple[str | None, str, str]],
        later: set[tuple[str | None, str, str]],
        notes: list[str],
    ) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        snapshots: list[dict[str, Any]] = []
        for image, profile in images.items():
            steps.append(
                {"do": "deregister", "region": image.region, "image_id": image.image_id, "profile": profile}
            )
            for snap in _all_snaps(image, profile, facts):
                _, region, snapshot = snap
                others = sorted(
                    u
                    for u in facts.snapshot_users(profile, region, snapshot)
                    if (profile, region, u) not in gone
                )
                if others:
                    notes.append(
                        f"snapshot {snapshot} in {region} stays: AMI {', '.join(others)} still uses it"
                    )
                elif snap in later:
                    notes.append(
                        f"snapshot {snapshot} in {region}: deleted with a later build it is shared with"
                    )
                elif not any(s["snapshot_id"] == snapshot and s["region"] == region for s in snapshots):
                    snapshots.append(
                        {
                            "do": "delete-snapshot",
                            "region": region,
                            "snapshot_id": snapshot,
                            "profile": profile,
                        }
                    )
        steps += snapshots + local.file_steps(build)
        moves = [
            m for m in self.catalog.channel_history(build.spec_name, limit=_ALL) if m.to_build == build.id
        ]
        steps.append({"do": "forget-channel-moves", "spec": build.spec_name, "count": len(moves)})
        return steps

    def _channels(self, name: str) -> dict[str, list[str]]:
        pointed: dict[str, list[str]] = {}
        for c in self.catalog.channels(name):
            if c.build_id:
                pointed.setdefault(c.build_id, []).append(c.channel)
            for end in ("from", "to"):
                if c.pending and c.pending.get(end):
                    pointed.setdefault(str(c.pending[end]), []).append(
                        f"{c.channel} (a move {end} it is pending)"
                    )
        return pointed

    def _children(self, build_id: str) -> list[Child]:
        return [Child(c.id, c.spec_name, c.pruned_at is not None) for c in self.catalog.children(build_id)]

    def apply(self, plan: SpecPlan, report: PruneReport) -> None:
        for build in reversed(plan.builds):  # oldest first
            if build.action is Action.DEPRECATE:
                self._deprecate(plan.spec, build, report)
            elif build.action is Action.REMOVE:
                journal = {
                    "owner": asdict(Owner.current()),
                    "spec": plan.spec,
                    "steps": build.steps,
                    "done": 0,
                }
                self.catalog.set_pruning(build.build_id, journal)
                self._finish(build.build_id, journal, report)

    def _deprecate(self, spec: str, build: BuildPlan, report: PruneReport) -> None:
        failed = False
        for step in build.steps:
            failed |= not self._step(build.build_id, step, report)
        if not failed:
            self.catalog.mark_deprecated(build.build_id)

    def _finish(self, build_id: str, journal: dict[str, Any], report: PruneReport) -> None:
        steps = journal["steps"]
        for index in range(int(journal.get("done", 0)), len(steps)):
            if not self._step(build_id, steps[index], report):
                return  # journaled: the next prune goes on from here
            journal = {**journal, "done": index + 1}
            self.catalog.set_pruning(build_id, journal)
        self.catalog.mark_pruned(build_id)
        report.pruned.append(build_id)
        report.done.append(f"{build_id}: pruned")
        self.log(f"{build_id}: pruned")

    def _step(self, build_id: str, step: dict[str, Any], report: PruneReport) -> bool:
        from imgpipe.channels import _describe

        what = describe(step)
        try:
            note = self._do(build_id, step)
        except Exception as exc:  # noqa: BLE001 - say what failed, go on with the other builds
            report.failures.append(f"{build_id}: {what}: {_describe(exc)}")
            self.log(f"{build_id}: FAILED {what}: {_describe(exc)}")
            return False
        line = f"{build_id}: done: {what}" + (f" ({note})" if note else "")
        report.done.append(line)
        self.log(line)
        return True

    def _do(self, build_id: str, step: dict[str, Any]) -> str | None:
        do = step["do"]
        if do in ("remove-file", "remove-dir"):
            local.remove(step)
            return None
        if do == "forget-channel-moves":
            self.catalog.forget_channel_moves(step["spec"], build_id)
            return None
        ec2 = self.client("ec2", step.get("profile"), step["region"])
        if do == "deregister":
            aws.deregister(ec2, step["image_id"])
        elif do == "deprecate":
            aws.deprecate(ec2, step["image_id"], self.now)
        elif do == "delete-snapshot":
            users = aws.delete_snapshot_unless_used(ec2, step["snapshot_id"])
            if users:
                return f"kept: AMI {', '.join(users)} still uses it"
        return None

    def resume(self, report: PruneReport, names: list[str] | None = None) -> dict[str, str]:
        """Finish the prunes whose process is gone (in a dry run: list them). Returns the
        builds a live process is pruning (the plan leaves them alone)."""
        busy: dict[str, str] = {}
        for build in self.catalog.pruning_builds():
            journal = build.pruning or {}
            if names and build.spec_name not in names:
                continue
            owner = _owner(journal)
            if not owner.is_gone():
                busy[build.id] = f"being pruned by process {owner.pid} on {owner.host}"
                continue
            steps = list(journal.get("steps") or [])
            done = int(journal.get("done", 0))
            plan = BuildPlan(
                build.id,
                build.started_at.isoformat(timespec="seconds"),
                _state(build),
                Action.REMOVE,
                [f"finishing an interrupted prune ({done} of {len(steps)} steps were done)"],
                steps[done:],
                resumed=True,
            )
            report.resumed.append(plan)
            if not self.dry_run:
                self.log(f"{build.id}: finishing an interrupted prune")
                self._finish(build.id, {**journal, "owner": asdict(Owner.current())}, report)
                if build.id not in report.pruned:  # still journaled: the next prune tries again
                    busy[build.id] = "its interrupted prune could not be finished yet"
            else:
                busy[build.id] = "an interrupted prune, finished by a real run first"
        return busy


def prune(
    catalog: Catalog,
    names: list[str] | None = None,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda _line: None,
    session_for: Callable[[str | None], AwsSession] | None = None,
    now: datetime | None = None,
) -> PruneReport:
    """Prune the named specs (default: every spec with a retention policy)."""
    return Pruner(catalog, dry_run=dry_run, now=now, session_for=session_for, log=log).run(names)


def _profiles(build: BuildView, loaded: LoadedSpec | None) -> dict[Image, str | None]:
    """Each image of the build with the AWS profile to reach it: the one recorded with it,
    else its target's in the spec."""
    from imgpipe.retention.policy import images_of

    out: dict[Image, str | None] = {}
    for image in images_of(build):
        profile = image.profile
        if profile is None and loaded is not None:
            settings = loaded.targets.get(image.target)
            profile = getattr(getattr(settings, "aws", None), "profile", None)
        out[image] = profile
    return out


def _elsewhere(builds: list[BuildView]) -> dict[str, str]:
    """Builds whose files only their own host can remove: they stay (so do their parents)."""
    hosts = {b.id: local.elsewhere(b) for b in builds}
    return {i: f"its files are on host {h}: run `imgpipe prune` there" for i, h in hosts.items() if h}


def _all_snaps(image: Image, profile: str | None, facts: aws.Ec2Facts) -> list[tuple[str | None, str, str]]:
    actual = facts.images.get((profile, image.region), {}).get(image.image_id, ())
    return [(profile, image.region, s) for s in dict.fromkeys([*image.snapshot_ids, *actual])]


def _owner(journal: dict[str, Any]) -> Owner:
    try:
        return Owner(**journal["owner"])
    except (KeyError, TypeError):
        return Owner("", 0, None, "", "", "")  # unreadable: never judged gone


def _state(build: BuildView) -> str:
    return "revoked" if build.revoked_at is not None else build.status.value
