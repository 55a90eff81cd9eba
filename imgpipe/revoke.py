"""Revocation: `imgpipe revoke BUILD --reason TEXT [--descendants]`.

A revoked build can no longer be a parent or a channel's target (the catalog says so
first, before anything else changes). Then:

- every channel of its spec pointing at it rolls back to the previous good build: the
  newest build that channel pointed at before (its history, newest first) that is still
  usable (succeeded, not revoked, not pruned, its images still there); failing that, the
  newest usable build of the spec older than the revoked one. The move is an ordinary
  channel move (channels.Mover): every SSM parameter and symlink, or none.
- a channel with no good build to roll back to is LEFT where it is, pointing at the
  revoked build, and the revoke exits non-zero saying so. Removing it (deleting its SSM
  parameters) would break every launch template and Terraform run that resolves it at
  once, an outage no revoke should cause on its own; the revoked AMIs stay launchable
  until an operator promotes a fixed build (`imgpipe promote`), which then fixes it.
- its AMIs (each target, each region) are tagged `imgpipe:revoked=true` and
  `imgpipe:revoked-reason=...` and get an EC2 deprecation time (best-effort: an endpoint
  without EnableImageDeprecation leaves a warning, and the catalog's `deprecated_at` unset).
  AMIs are reached with the AWS profile the target's settings recorded (`aws.profile` in
  its fingerprint inputs), else boto3's default chain.
- a `REVOKED` note (reason, by, when) is written into each output directory of its image
  files on this host.
- with `descendants`, every build made from it (recursively) is revoked the same way,
  with the reason "parent PARENT revoked: TEXT".

The plan (plan_revoke) is computed first and either shown (dry run) or applied exactly
(apply_revoke). Revoking again is not an error: the first reason stays, and channels, tags
and notes are made sure of once more, which also finishes a revoke that failed halfway."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.catalog.models import Status
from imgpipe.errors import SpecError

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.catalog import BuildView, Catalog
    from imgpipe.catalog.views import ChannelView

NOTE_NAME = "REVOKED"


class Step(StrEnum):
    REVOKE = "revoke"  # mark the build revoked in the catalog
    ROLL_BACK = "roll back"  # move a channel off it to the previous good build
    LEAVE = "leave"  # a channel with no good build to roll back to: left as is (a problem)
    MARK_AMI = "mark AMI"  # tag it revoked, give it a deprecation time
    NOTE = "write note"  # write REVOKED beside the image files


@dataclass(frozen=True)
class Action:
    step: Step
    build_id: str
    subject: str  # what it acts on: "channel stable of web", "AMI ami-1 in eu-west-1", a path
    why: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step.value, "build": self.build_id, "subject": self.subject, "why": self.why}


@dataclass(frozen=True)
class Plan:
    build_id: str
    reason: str
    by: str
    actions: tuple[Action, ...]
    notes: tuple[str, ...]  # worth saying before anything happens (a running build, a pending move)


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: str  # would (dry run), done, skipped (nothing to do), warning (partly), failed, left
    detail: str = ""

    @property
    def problem(self) -> bool:
        return self.status in ("failed", "left")


@dataclass
class RevokeResult:
    plan: Plan
    dry_run: bool
    outcomes: list[Outcome]
    recovered: list[str] = field(default_factory=list)  # pending moves of dead processes finished

    @property
    def problems(self) -> list[str]:
        return [f"{o.action.subject}: {o.detail}" for o in self.outcomes if o.problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "build": self.plan.build_id,
            "reason": self.plan.reason,
            "by": self.plan.by,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "revoked": [a.build_id for a in self.plan.actions if a.step is Step.REVOKE],
            "notes": list(self.plan.notes),
            "recovered": self.recovered,
            "actions": [
                {**o.action.to_json(), "status": o.status, "detail": o.detail} for o in self.outcomes
            ],
            "problems": self.problems,
        }


def revoke(
    catalog: Catalog,
    build_ref: str,
    reason: str | None,
    *,
    by: str | None = None,
    descendants: bool = False,
    dry_run: bool = False,
    aws: AwsSession | None = None,
) -> RevokeResult:
    """Revoke a build (and with `descendants` every build made from it): plan, then apply
    unless `dry_run`. SpecError for an empty reason or an unknown build; anything that
    fails on the way is an Outcome with status `failed` (the result is then not ok).
    `aws`: the session for every AWS call (default: one per recorded profile)."""
    _check_reason(reason)  # before anything, even the recovery of dead moves, happens
    by = by or f"{getpass.getuser()}@{socket.gethostname()}"
    recovered: list[str] = []
    if not dry_run:
        from imgpipe.channels import Mover

        mover = Mover(catalog, aws, by)
        for spec_name in _specs(catalog, build_ref, descendants):
            recovered += [f"{spec_name}: {line}" for line in mover.recover(spec_name)]
    plan = plan_revoke(catalog, build_ref, reason, by=by, descendants=descendants, dry_run=dry_run)
    if dry_run:
        outcomes = [_would(a) for a in plan.actions]
        return RevokeResult(plan, True, outcomes, recovered)
    return RevokeResult(plan, False, apply_revoke(catalog, plan, aws=aws), recovered)


def plan_revoke(
    catalog: Catalog,
    build_ref: str,
    reason: str | None,
    *,
    by: str,
    descendants: bool = False,
    dry_run: bool = False,
) -> Plan:
    """Every action a revoke of `build_ref` takes, each with its subject and why."""
    text = _check_reason(reason)
    root = _find(catalog, build_ref)
    builds = [(root, text)] + (_descendants(catalog, root, text) if descendants else [])
    dead = {b.id for b, _ in builds}
    actions: list[Action] = []
    notes: list[str] = []
    for build, why in builds:
        actions.append(_revoke_action(build, why, notes))
    for spec_name in dict.fromkeys(b.spec_name for b, _ in builds):
        for channel in catalog.channels(spec_name):
            if channel.pending and dry_run:
                notes.append(
                    f"channel {channel.channel} of {spec_name} has a move to {channel.pending['to']} "
                    "in progress: a real run finishes or reverts it first if its process is gone"
                )
            if channel.build_id in dead:
                actions.append(_channel_action(catalog, channel, dead))
    for build, _ in builds:
        actions += _ami_actions(build)
        actions += _note_actions(build, notes)
    return Plan(root.id, text, by, tuple(actions), tuple(notes))


def apply_revoke(catalog: Catalog, plan: Plan, *, aws: AwsSession | None = None) -> list[Outcome]:
    """Carry out exactly `plan`: the catalog first, then channels, AMIs and notes."""
    from imgpipe.aws.revocation import deprecation_time
    from imgpipe.channels import Mover

    outcomes: list[Outcome] = []
    revoked: dict[str, BuildView] = {}
    for action in _of(plan, Step.REVOKE):
        view = catalog.revoke(action.build_id, action.data["reason"], plan.by)
        revoked[view.id] = view
        if action.data["already"]:
            outcomes.append(Outcome(action, "skipped", f"already revoked ({_said(view)}): kept"))
        else:
            outcomes.append(Outcome(action, "done", f"revoked ({_said(view)})"))
    sessions = _Sessions(aws)
    needs_ssm = any(p["kind"] == "ssm" for a in _of(plan, Step.ROLL_BACK) for p in a.data["places"])
    mover = Mover(catalog, sessions.get(None) if needs_ssm else aws, plan.by)
    for action in plan.actions:
        if action.step is Step.ROLL_BACK:
            outcomes.append(_roll_back(catalog, mover, action))
        elif action.step is Step.LEAVE:
            outcomes.append(Outcome(action, "left", action.why))
    deprecate_at = deprecation_time()
    for build_id, view in revoked.items():
        marks = [
            _mark(sessions, a, view, deprecate_at) for a in _of(plan, Step.MARK_AMI) if a.build_id == build_id
        ]
        outcomes += marks
        if marks and all(m.status in ("done", "skipped") for m in marks):
            catalog.mark_deprecated(build_id)
        outcomes += [_write_note(a, view) for a in _of(plan, Step.NOTE) if a.build_id == build_id]
    return outcomes


def _specs(catalog: Catalog, build_ref: str, descendants: bool) -> list[str]:
    root = _find(catalog, build_ref)
    builds = [root] + ([b for b, _ in _descendants(catalog, root, "")] if descendants else [])
    return list(dict.fromkeys(b.spec_name for b in builds))


def _check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise SpecError("--reason is required: say why the build is revoked (e.g. --reason 'CVE-2026-1234')")
    return text


def _find(catalog: Catalog, build_ref: str) -> BuildView:
    build = catalog.get(build_ref)
    if build is None:
        raise SpecError(
            f"no build {build_ref!r} in the catalog {catalog.url_masked} (`imgpipe builds` lists them)"
        )
    return build


def _descendants(catalog: Catalog, root: BuildView, text: str) -> list[tuple[BuildView, str]]:
    """Builds made from `root`, and from those, ..., parents before children."""
    found: list[tuple[BuildView, str]] = []
    seen, queue = {root.id}, [root]
    while queue:
        parent = queue.pop(0)
        for child in catalog.children(parent.id):
            if child.id not in seen:
                seen.add(child.id)
                found.append((child, f"parent {parent.id} revoked: {text}"))
                queue.append(child)
    return found


def _revoke_action(build: BuildView, why: str, notes: list[str]) -> Action:
    already = build.revoked_at is not None
    if already:
        notes.append(
            f"build {build.id} is already revoked ({_said(build)}): "
            "its channels, AMIs and note are made sure of again"
        )
    if build.status is Status.RUNNING:
        notes.append(
            f"build {build.id} is still running: revoked, it can't become a parent or a channel's "
            "target when it ends (`latest` does not move to it)"
        )
    elif build.status is not Status.SUCCEEDED:
        notes.append(
            f"build {build.id} {build.status.value}: revoked all the same, so it can never be a parent"
        )
    return Action(
        Step.REVOKE,
        build.id,
        f"build {build.id} of {build.spec_name}",
        why,
        {"reason": why, "already": already, "status": build.status.value},
    )


def _channel_action(catalog: Catalog, channel: ChannelView, dead: set[str]) -> Action:
    """Roll `channel` back to the previous good build, or leave it (no good build)."""
    from imgpipe.rollback import choose

    name, current = channel.channel, str(channel.build_id)
    subject = f"channel {name} of {channel.spec_name}"
    choice = choose(catalog, channel, dead)
    if choice.build is None:
        return Action(Step.LEAVE, current, subject, choice.why)
    data = {
        "channel": name,
        "spec": channel.spec_name,
        "to": choice.build.id,
        "places": choice.places,
        "stale": choice.stale,
    }
    return Action(Step.ROLL_BACK, current, subject, f"{current} -> {choice.build.id} ({choice.why})", data)


def _ami_actions(build: BuildView) -> list[Action]:
    from imgpipe.core.artifact import AMI

    actions, seen = [], set()
    for t in build.targets:
        profile = (t.fingerprint_parts.get("target") or {}).get("aws.profile")
        for a in t.artifacts:
            if a.kind != AMI or not a.region or (a.region, a.ref) in seen:
                continue
            seen.add((a.region, a.ref))
            made_with = a.data.get("profile") or profile  # the image's own, else the target's
            data = {"region": a.region, "image_id": a.ref, "profile": made_with, "target": t.target}
            actions.append(
                Action(Step.MARK_AMI, build.id, f"AMI {a.ref} in {a.region}", "tag revoked, deprecate", data)
            )
    return actions


def _note_actions(build: BuildView, notes: list[str]) -> list[Action]:
    from imgpipe.core.artifact import IMAGE_FILE
    from imgpipe.history import file_elsewhere

    actions, seen = [], set()
    for t in build.targets:
        out = t.record.get("output_dir")
        if not out or not any(a.kind == IMAGE_FILE for a in t.artifacts) or out in seen:
            continue
        seen.add(out)
        host = file_elsewhere(t)
        if host:
            notes.append(
                f"build {build.id}'s image files are on host {host}: no {NOTE_NAME} note is written there"
            )
            continue
        path = str(Path(out) / NOTE_NAME)
        actions.append(Action(Step.NOTE, build.id, path, "beside its image files", {"dir": out}))
    return actions


def _roll_back(catalog: Catalog, mover: Any, action: Action) -> Outcome:
    data = action.data
    target = catalog.get(data["to"])
    if target is None or not target.usable:
        return Outcome(
            action, "failed", f"build {data['to']} is no longer a good build: run the revoke again"
        )
    try:
        result = mover.move(target, data["channel"])
    except Exception as exc:  # noqa: BLE001 - one channel's failure is reported with the others
        return Outcome(action, "failed", str(exc).splitlines()[0])
    detail = f"{result.previous or '-'} -> {result.build_id}"
    if data["stale"]:
        stale = ", ".join(data["stale"])
        return Outcome(
            action, "failed", f"{detail}, but build {target.id} has no image for {stale}: still revoked there"
        )
    return Outcome(action, "done", detail)


def _mark(sessions: _Sessions, action: Action, view: BuildView, deprecate_at: datetime) -> Outcome:
    from imgpipe.aws.revocation import mark_revoked

    data = action.data
    try:
        session = sessions.get(data["profile"])
        mark = mark_revoked(
            session, data["region"], data["image_id"], view.revoked_reason or "", deprecate_at
        )
    except Exception as exc:  # noqa: BLE001 - reported with the others; a second revoke retries
        from imgpipe.channels import _describe

        return Outcome(action, "failed", f"could not tag it revoked: {_describe(exc)}")
    if mark.gone:
        return Outcome(action, "skipped", "gone already")
    if mark.deprecation_error:
        return Outcome(
            action,
            "warning",
            f"tagged revoked, but EC2 refused a deprecation time ({mark.deprecation_error}); "
            "run the revoke again to retry",
        )
    when = f"{mark.deprecated_at:%Y-%m-%d %H:%M} UTC" if mark.deprecated_at else "?"
    said = "deprecated since" if mark.already_deprecated else "deprecated at"
    return Outcome(action, "done", f"tagged revoked, {said} {when}")


def _write_note(action: Action, view: BuildView) -> Outcome:
    """REVOKED beside the image, written whole (temporary file renamed) or not at all."""
    out = Path(action.data["dir"])
    if not out.is_dir():
        return Outcome(action, "skipped", f"its output directory {out} is gone")
    when = view.revoked_at or datetime.now(UTC)
    text = (
        "This image was revoked: don't use it. imgpipe builds nothing on it and points no channel at it.\n"
        f"build:  {view.id} ({view.spec_name})\n"
        f"reason: {view.revoked_reason}\n"
        f"by:     {view.revoked_by}\n"
        f"when:   {when.isoformat(timespec='seconds')}\n"
    )
    path = out / NOTE_NAME
    tmp = out / f".{NOTE_NAME}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return Outcome(action, "failed", f"could not write it: {exc.strerror or exc}")
    return Outcome(action, "done", "written")


class _Sessions:
    """One AwsSession per profile, made when first needed; a given session serves all."""

    def __init__(self, given: AwsSession | None) -> None:
        self._given = given
        self._made: dict[str | None, AwsSession] = {}

    def get(self, profile: str | None) -> AwsSession:
        if self._given is not None:
            return self._given
        if profile not in self._made:
            self._made[profile] = _new_session(profile)
        return self._made[profile]


def _new_session(profile: str | None) -> AwsSession:
    from imgpipe.aws.session import AwsSession, AwsSettings

    return AwsSession(AwsSettings(profile=profile))


def _would(action: Action) -> Outcome:
    if action.step is Step.LEAVE:
        return Outcome(action, "would", f"would be left: {action.why}")
    return Outcome(action, "would", action.why)


def _of(plan: Plan, step: Step) -> list[Action]:
    return [a for a in plan.actions if a.step is step]


def _said(build: BuildView) -> str:
    when = f"{build.revoked_at:%Y-%m-%d %H:%M:%S} UTC" if build.revoked_at else "?"
    return f"{build.revoked_reason}, by {build.revoked_by}, {when}"
