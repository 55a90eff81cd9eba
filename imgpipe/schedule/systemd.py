"""cron -> systemd OnCalendar=, and the imgpipe-nightly.service/.timer pair that runs
`imgpipe nightly` over a directory of specs.

Each spec's cron becomes OnCalendar= lines that elapse exactly at its cron times, in its
IANA zone (systemd reads `... 03:00:00 Europe/Berlin` in that zone, across DST). cron's
"day of month OR day of week" (both fields restricted) becomes two lines, L (the last
day) `~01`, `mon#2` `Mon *-*-08..14`, `5L` `Fri *-*~07/1`. Two DST corners differ from
croniter, and nightly's due logic covers both: a time in the hour a spring change skips
does not elapse that day (the spec is baked at the next elapse), and one in the hour an
autumn change repeats elapses once. The timer only wakes nightly; nightly decides what is
due and changed. A timer that elapses while a run is still going starts nothing (systemd
does not queue it); the next run bakes what became due meanwhile."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from imgpipe.errors import SpecError
from imgpipe.schedule.cronexpr import LAST, Unrepresentable, compact, parse
from imgpipe.schedule.due import ScheduledSpec
from imgpipe.schedule.install import ENV_FILE, PlannedFile, one_line

UNIT_DIR = PurePosixPath("/etc/systemd/system")
SERVICE = "imgpipe-nightly.service"
TIMER = "imgpipe-nightly.timer"
DEFAULT_CALENDAR = "*-*-* 03:00:00"  # no spec has a schedule: daily, in the machine's zone
_WEEK = (1, 2, 3, 4, 5, 6, 0)  # systemd's weekday order: Mon..Sun; its ranges cannot wrap
_DAY_NAMES = {1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 0: "Sun"}


def on_calendar(cron: str, timezone: str) -> list[str]:
    """OnCalendar= expressions that together elapse exactly at the cron times croniter
    computes in `timezone` (DST corners aside, see the module docstring).
    Unrepresentable when no set of expressions can."""
    f = parse(cron)
    month = "*" if f.months is None else compact(f.months, 1, 12, systemd=True)
    hours = compact(f.hours, 0, 23, systemd=True)
    time = f"{hours}:{compact(f.minutes, 0, 59, systemd=True)}:00"
    dates: list[str] = []
    if f.days:
        dates.append(f"*-{month}-{compact(f.days, 1, 31, systemd=True)}")
    if f.last_day:
        dates.append(f"*-{month}~01")
    if f.plain_weekdays:
        dates.append(f"{_weekdays(f.plain_weekdays)} *-{month}-*")
    by_nth: dict[int | str, list[int]] = defaultdict(list)
    for day, nths in f.nth.items():
        for n in nths:
            by_nth[n].append(day)
    for n, days in sorted(by_nth.items(), key=lambda item: (item[0] == LAST, str(item[0]))):
        if n == LAST:
            dates.append(f"{_weekdays(days)} *-{month}~07/1")
        else:
            first = (int(n) - 1) * 7 + 1
            dates.append(f"{_weekdays(days)} *-{month}-{first:02d}..{min(first + 6, 31):02d}")
    if not dates:
        dates.append(f"*-{month}-*")
    return [f"{date} {time} {timezone}" for date in dates]


def spec_calendars(spec: ScheduledSpec) -> list[str]:
    """on_calendar() for a spec's schedule; SpecError naming file, line and field."""
    assert spec.schedule is not None
    try:
        return on_calendar(spec.schedule.cron, spec.schedule.timezone)
    except Unrepresentable as exc:
        raise SpecError(
            f"{spec.position('cron')}: schedule.cron: {spec.schedule.cron!r} cannot be written as "
            f"systemd OnCalendar= exactly: {exc.field} field: {exc.reason}",
            hint="write the days out (e.g. '0 3 14-16 * *'), or use --cron or a CI export",
        ) from None


def units(
    specs: Sequence[ScheduledSpec], command: Sequence[str], directory: Path
) -> tuple[list[PlannedFile], list[str]]:
    """The service and timer files, and notes for the user (default schedule, specs
    baked on every run). `command` is the full `imgpipe nightly ...` argv."""
    calendars: dict[str, list[str]] = {}
    problems: list[str] = []
    for spec in specs:
        if spec.schedule is None:
            continue
        try:
            for calendar in spec_calendars(spec):
                calendars.setdefault(calendar, []).append(spec.path.name)
        except SpecError as exc:
            problems.append(str(exc))
    if problems:
        raise SpecError("\n".join(problems))
    notes = []
    unscheduled = [s.path.name for s in specs if s.schedule is None]
    if not calendars:
        calendars[DEFAULT_CALENDAR] = []
        notes.append(
            f"no spec has a schedule: the timer runs daily at 03:00 in this machine's time zone "
            f"(OnCalendar={DEFAULT_CALENDAR}); a spec's `schedule: {{cron: ..., timezone: ...}}` changes it"
        )
    elif unscheduled:
        notes.append(
            f"{len(unscheduled)} spec(s) without a schedule ({', '.join(unscheduled)}) are baked, when "
            "changed, on every run of the timer"
        )
    service = PlannedFile(UNIT_DIR / SERVICE, _service(command, directory), 0o644)
    timer = PlannedFile(UNIT_DIR / TIMER, _timer(calendars, unscheduled, directory), 0o644)
    return [service, timer], notes


def _service(command: Sequence[str], directory: Path) -> str:
    return f"""\
# Written by `imgpipe schedule install --systemd`. No secrets here: IMGPIPE_CATALOG
# (the catalog database URL) and AWS credentials go in {ENV_FILE}
# (KEY=value lines, owner root, mode 0600), read through EnvironmentFile= below.
[Unit]
Description=imgpipe nightly: bake the due and changed specs in {_specifiers(one_line(str(directory)))}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={_specifiers(str(directory))}
EnvironmentFile=-{ENV_FILE}
ExecStart={" ".join(_exec_arg(arg) for arg in command)}
# SIGTERM to imgpipe alone: it stops its builds and removes their VMs itself, given time.
KillMode=mixed
TimeoutStopSec=15min
"""


def _timer(calendars: dict[str, list[str]], unscheduled: list[str], directory: Path) -> str:
    lines = [
        "# Written by `imgpipe schedule install --systemd` from the specs' `schedule:` blocks.",
        "# It only wakes `imgpipe nightly`, which bakes a spec when one of its cron times passed",
        "# since its last attempt and it changed.",
    ]
    lines += [
        f"#   {', '.join(map(one_line, names))}: {calendar}" for calendar, names in calendars.items() if names
    ]
    if unscheduled:
        lines.append(
            f"#   no schedule (baked, when changed, on every run): {', '.join(map(one_line, unscheduled))}"
        )
    if not any(calendars.values()):
        lines.append("#   no spec has a schedule: daily at 03:00 in this machine's time zone")
    lines += [
        "[Unit]",
        f"Description=imgpipe nightly over {_specifiers(one_line(str(directory)))}",
        "",
        "[Timer]",
        *(f"OnCalendar={calendar}" for calendar in calendars),
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return "\n".join(lines)


def _weekdays(days: Sequence[int]) -> str:
    """`Mon..Fri`, `Mon,Wed,Sun`: runs of three or more in Mon..Sun order as ranges."""
    order = sorted(_WEEK.index(d) for d in set(days))
    parts: list[str] = []
    run: list[int] = []
    for index in [*order, None]:
        if run and (index is None or index != run[-1] + 1):
            names = [_DAY_NAMES[_WEEK[i]] for i in run]
            parts.extend([f"{names[0]}..{names[-1]}"] if len(run) >= 3 else names)
            run = []
        if index is not None:
            run.append(index)
    return ",".join(parts)


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _exec_arg(arg: str) -> str:
    """One ExecStart= argument: % (specifiers) and $ (variables) escaped, quoted when
    it holds spaces, quotes, backslashes or is a lone ';'."""
    if "\n" in arg or "\r" in arg:
        raise SpecError(f"{arg!r}: a path with a line break cannot go in a systemd unit")
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and escaped != ";" and not any(c in escaped for c in " \t\"'\\"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
