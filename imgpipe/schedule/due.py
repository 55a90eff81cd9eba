"""When a spec is due, and where its schedule is written.

A spec is due when one of its cron times t fell in last_attempt < t <= now: a run that
starts late (a busy runner, a machine that was off) still bakes a spec due at 03:00, and
a second run the same night does not bake it again. Cron times are computed by croniter
on timezone-aware datetimes in the schedule's IANA zone, so they follow DST: in
Europe/Berlin "0 3 * * *" is 01:00 UTC in summer and 02:00 UTC in winter; a time in the
hour a spring change skips comes at the first minute after it (croniter's choice), and a
time in the hour an autumn change repeats comes twice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from pydantic import ValidationError

from imgpipe.errors import SpecError
from imgpipe.spec.model import Schedule
from imgpipe.spec.problems import problems_from_validation
from imgpipe.spec.yamlsource import Located, Position, YamlSyntaxError, load_located_file


@dataclass(frozen=True)
class ScheduledSpec:
    """A spec file's name and schedule (None: due on every nightly run), read from its
    `schedule:` block alone, so a spec whose required variables are unset still has one."""

    path: Path
    name: str
    schedule: Schedule | None
    doc: Located

    def position(self, field: str = "") -> Position:
        """Where `schedule.<field>` (or the `schedule:` block) is written."""
        return self.doc.position(("schedule", field) if field else ("schedule",))


def next_due(schedule: Schedule, after: datetime) -> datetime:
    """The first cron time strictly after `after` (timezone-aware), in the schedule's zone."""
    zone = ZoneInfo(schedule.timezone)
    start = _aware(after, "after").astimezone(zone)
    try:
        due: datetime = croniter(schedule.cron, start).get_next(datetime)
    except CroniterError as exc:  # e.g. '0 3 1 * mon#2': valid to croniter, yet it finds no time
        raise SpecError(f"schedule {schedule.cron!r} ({schedule.timezone}): no next time: {exc}") from None
    return due


def is_due(schedule: Schedule | None, last_attempt: datetime | None, now: datetime) -> bool:
    """Due when a cron time t satisfies last_attempt < t <= now. A spec without a
    schedule is due on every run; one never attempted is due at once."""
    _aware(now, "now")
    if schedule is None or last_attempt is None:
        return True
    return next_due(schedule, last_attempt) <= now


def spec_schedule(path: Path) -> Schedule | None:
    """The schedule of the spec at `path`; SpecError naming file, line and field if its
    `schedule:` block is invalid."""
    return read_schedule(path).schedule


def read_schedule(path: Path) -> ScheduledSpec:
    try:
        doc = load_located_file(path)
    except YamlSyntaxError as exc:
        raise SpecError(f"{exc.position}: YAML syntax error: {exc.problem}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror}") from None
    data = doc.data
    if not isinstance(data, dict):
        raise _invalid([f"{doc.position(())}: (document): expected a mapping of spec fields"], path)
    name = data.get("name")
    name = name if isinstance(name, str) and name else path.stem
    raw = data.get("schedule")
    if raw is None:
        return ScheduledSpec(path, name, None, doc)
    problems = _templated(raw, doc)
    if not problems:
        try:
            return ScheduledSpec(path, name, Schedule.model_validate(raw), doc)
        except ValidationError as exc:
            problems = problems_from_validation(exc, doc, Schedule, ("schedule",))
    raise _invalid(problems, path)


def read_schedules(paths: Iterable[Path]) -> list[ScheduledSpec]:
    """Every spec named or found in a directory (imgpipe.spec.discover rules) with its
    schedule; one SpecError listing the problems of every spec whose schedule is invalid."""
    from imgpipe.spec.discover import find_specs

    found: list[ScheduledSpec] = []
    errors: list[str] = []
    for path in find_specs(paths):
        try:
            found.append(read_schedule(path))
        except SpecError as exc:
            errors.append(exc.message)
    if errors:
        raise SpecError("\n".join(errors))
    return found


def _templated(raw: Any, doc: Located) -> list[str]:
    """`{{ var }}` in a schedule: nightly would render it, but the schedulers `imgpipe
    schedule` writes for (systemd, cron, CI) read the schedule without variable values."""
    if not isinstance(raw, dict):
        return []
    return [
        f"{doc.position(('schedule', key))}: schedule.{key}: variables ({{{{ ... }}}}) are not allowed in "
        "a schedule: the system scheduler is set up from the spec file without variable values"
        for key, value in raw.items()
        if isinstance(value, str) and "{{" in value
    ]


def _invalid(problems: list[str], path: Path) -> SpecError:
    head = f"{path}: invalid schedule ({len(problems)} problem{'s' * (len(problems) > 1)})"
    return SpecError("\n".join([head, *("  " + p for p in problems)]))


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what}={moment!r} is a naive datetime: pass a timezone-aware one")
    return moment
