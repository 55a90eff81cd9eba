"""CI workflows that run `imgpipe nightly` on the CI's own scheduler.

GitHub Actions reads `on.schedule[].cron` in UTC only. A spec whose zone keeps one UTC
offset (UTC, Asia/Tokyo, Asia/Kolkata) is converted exactly. A zone with DST gets the
times under each of its offsets (Europe/Berlin "0 3 * * *" -> "0 1,2 * * *"): the run at
the wrong one of the two finds nothing due. Where a move across midnight cannot be
written (a day-of-month restriction: the day before the 1st is no fixed day), it runs
every day at the spec's UTC times, not hourly: fewer runs, none late. Either way
nightly's due logic decides, and the YAML says so. GitLab's pipeline
schedules carry their own cron and IANA zone, so the job only runs for them; the
schedules themselves are created in GitLab (UI or API) and listed in a comment.

The catalog URL comes from the CI secret store (GitHub secret, GitLab masked variable),
never from the file; the job stops with a clear message when it is not set."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from imgpipe.errors import SpecError
from imgpipe.schedule.cronexpr import Unrepresentable, merge, parse, standard_cron
from imgpipe.schedule.due import ScheduledSpec
from imgpipe.schedule.install import one_line

REPORT = "nightly-report.json"
DEFAULT_UTC_CRON = "0 3 * * *"  # no spec has a schedule
GITHUB_RUNNER = ("self-hosted", "linux", "kvm")
GITLAB_TAGS = ("linux", "kvm")
_CATALOG_CHECK = (
    'test -n "$IMGPIPE_CATALOG" || {{ echo "{prefix}IMGPIPE_CATALOG (the catalog database URL) is not set: '
    '{where}" >&2; exit 1; }}'
)


@dataclass(frozen=True)
class UtcSchedule:
    """A spec's schedule as UTC cron lines for a scheduler without time zones."""

    spec: str
    cron: str
    zone: str
    lines: tuple[str, ...]
    how: str  # "exact", or why nightly's due logic narrows it


def utc_offsets(zone: str, start: datetime, days: int = 400) -> list[int]:
    """The UTC offsets (minutes) `zone` takes in the next `days` days: one for a fixed zone."""
    tz = ZoneInfo(zone)
    offsets = set()
    for day in range(days + 1):
        offset = (start + timedelta(days=day)).astimezone(tz).utcoffset()
        assert offset is not None
        offsets.add(int(offset.total_seconds()) // 60)
    return sorted(offsets)


def utc_schedule(spec: ScheduledSpec, now: datetime) -> UtcSchedule:
    assert spec.schedule is not None
    cron, zone = spec.schedule.cron, spec.schedule.timezone
    try:
        fields = parse(cron)
    except Unrepresentable as exc:
        raise SpecError(
            f"{spec.position('cron')}: schedule.cron: {cron!r} cannot be converted for CI: "
            f"{exc.field} field: {exc.reason}"
        ) from None
    offsets = utc_offsets(zone, now)
    name = one_line(spec.path.name)
    notes = []
    converted = [standard_cron(fields, offset) for offset in offsets]
    if any(c is None for c in converted):
        # the day before the 1st is no fixed day: every day, at the spec's times in UTC
        fields = replace(fields, days=None, last_day=False, months=None, weekdays=None, nth={})
        converted = [standard_cron(fields, offset) for offset in offsets]
        notes.append("its days move across midnight in UTC: daily at its UTC times")
    done = [c for c in converted if c is not None]
    lines = tuple(dict.fromkeys(str(e) for e in merge(e for c in done for e in c.entries)))
    if len(offsets) > 1:
        shown = " and ".join(_utc(o) for o in offsets)
        notes.append(f"{zone} is {shown} (DST): the times under each")
    if not all(c.exact for c in done):
        notes.append("L/# written as plain days")
    how = "; ".join(notes) + "; nightly bakes it when due" if notes else "exact"
    return UtcSchedule(name, cron, zone, lines, how)


def github_actions(
    specs: Sequence[ScheduledSpec], directory: str, now: datetime, runs_on: Sequence[str] = GITHUB_RUNNER
) -> str:
    """.github/workflows/imgpipe-nightly.yml; `directory` relative to the repository root."""
    schedules = [utc_schedule(s, now) for s in specs if s.schedule is not None]
    crons = list(dict.fromkeys(line for s in schedules for line in s.lines)) or [DEFAULT_UTC_CRON]
    command = f"./run imgpipe nightly {_shell_word(directory)} --report {REPORT} --json"
    workflow = {
        "name": "imgpipe nightly",
        "on": {"schedule": [{"cron": c} for c in crons], "workflow_dispatch": None},
        "concurrency": {"group": "imgpipe-nightly", "cancel-in-progress": False},
        "permissions": {"contents": "read"},
        "jobs": {
            "nightly": {
                "runs-on": list(runs_on),
                "env": {"IMGPIPE_CATALOG": "${{ secrets.IMGPIPE_CATALOG }}"},
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    {
                        "name": "Check the catalog secret",
                        "run": _CATALOG_CHECK.format(prefix="::error::", where="add the repository secret"),
                    },
                    {"name": "Bake the due and changed specs", "run": command},
                    {
                        "name": "Upload the report",
                        "if": "always()",
                        "uses": "actions/upload-artifact@v4",
                        "with": {"name": "nightly-report", "path": REPORT, "if-no-files-found": "warn"},
                    },
                ],
            }
        },
    }
    header = [
        f"# .github/workflows/imgpipe-nightly.yml: written by `imgpipe schedule export {one_line(directory)} "
        "--github-actions`.",
        "# GitHub runs schedules in UTC (and often some minutes late). Each run only wakes",
        "# `imgpipe nightly`, which bakes a spec when one of its cron times passed since its last",
        "# attempt and it changed. The specs' schedules, and the UTC crons below:",
        *_schedule_comments(specs, schedules),
        "# IMGPIPE_CATALOG (the catalog database URL) comes from the repository secret",
        "# IMGPIPE_CATALOG (Settings > Secrets and variables > Actions), never from this file.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(workflow, sort_keys=False, width=1000)


def gitlab_ci(specs: Sequence[ScheduledSpec], directory: str, tags: Sequence[str] = GITLAB_TAGS) -> str:
    """A .gitlab-ci.yml job run by pipeline schedules (to include in the project's)."""
    scheduled = [s for s in specs if s.schedule is not None]
    job = {
        "imgpipe-nightly": {
            "rules": [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}],
            "tags": list(tags),
            "resource_group": "imgpipe-nightly",
            "script": [
                _CATALOG_CHECK.format(prefix="", where="add it as a masked CI/CD variable"),
                f"./run imgpipe nightly {_shell_word(directory)} --report {REPORT} --json",
            ],
            "artifacts": {"when": "always", "paths": [REPORT], "expire_in": "30 days"},
        }
    }
    wanted = [(s.schedule.cron, s.schedule.timezone) for s in scheduled if s.schedule is not None]
    wanted = list(dict.fromkeys(wanted)) or [(DEFAULT_UTC_CRON, "UTC")]
    header = [
        f"# imgpipe nightly: written by `imgpipe schedule export {one_line(directory)} --gitlab-ci`.",
        "# The job runs only in scheduled pipelines. Create the schedules in GitLab (Build >",
        "# Pipeline schedules > New schedule, or POST /projects/:id/pipeline_schedules with",
        "# cron and cron_timezone), one per line, on the default branch:",
        *(f"#   cron: {cron!r}  cron_timezone: {zone}" for cron, zone in wanted),
        *_schedule_comments(specs, None),
        "# Each run only wakes `imgpipe nightly`, which bakes a spec when one of its cron times passed",
        "# since its last attempt and it changed ('Run pipeline schedule' runs it now).",
        "# IMGPIPE_CATALOG (the catalog database URL) comes from a masked, protected CI/CD variable",
        "# (Settings > CI/CD > Variables), never from this file.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(job, sort_keys=False, width=1000)


def _schedule_comments(specs: Sequence[ScheduledSpec], schedules: Sequence[UtcSchedule] | None) -> list[str]:
    lines = []
    for s in schedules or ():
        lines.append(f"#   {s.spec}: {s.cron!r} {s.zone} -> {', '.join(map(repr, s.lines))} ({s.how})")
    if schedules is None:
        for spec in specs:
            if spec.schedule is not None:
                lines.append(
                    f"#   {one_line(spec.path.name)}: {spec.schedule.cron!r} {spec.schedule.timezone}"
                )
    unscheduled = [one_line(s.path.name) for s in specs if s.schedule is None]
    if unscheduled:
        lines.append(f"#   no schedule (baked, when changed, on every run): {', '.join(unscheduled)}")
    if not any(s.schedule for s in specs):
        lines.append(f"#   no spec has a schedule: daily at {DEFAULT_UTC_CRON!r} UTC")
    return lines


def _utc(offset: int) -> str:
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset), 60)
    return f"UTC{sign}{hours}" + (f":{minutes:02d}" if minutes else "")


def _shell_word(text: str) -> str:
    return shlex.quote(text)


def repo_relative(directory: Path) -> str:
    """`directory` as the workflow sees it: relative to the root of its git checkout
    (outside one: as given)."""
    resolved = directory.resolve()
    for parent in (resolved, *resolved.parents):
        if (parent / ".git").exists():
            return resolved.relative_to(parent).as_posix() or "."
    return directory.as_posix()
