"""A 5-field cron expression as croniter reads it, as sets of values, for the
converters (systemd OnCalendar=, UTC cron for CI). croniter expands the fields, so
names (mon-fri, jan), steps, ranges (including wrapping ones like 22-2) and Sunday as
0 or 7 mean here exactly what they mean to `imgpipe nightly`'s due logic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from croniter import croniter

FIELDS = ("minute", "hour", "day of month", "month", "day of week")
LAST = "l"  # croniter's mark for L: the last day of the month, or the last <weekday> of it


class Unrepresentable(Exception):
    """A cron expression a converter cannot write exactly; `field` is one of FIELDS."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class CronFields:
    """None for a field written as `*` (or `?`): any value."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...] | None  # day-of-month numbers (with last_day, possibly empty)
    last_day: bool  # L in the day-of-month field
    months: tuple[int, ...] | None
    weekdays: tuple[int, ...] | None  # 0 = Sunday ... 6 = Saturday
    nth: dict[int, frozenset[int | str]] = field(default_factory=dict)  # weekday -> {1..5, LAST}

    @property
    def day_restricted(self) -> bool:
        return self.days is not None

    @property
    def weekday_restricted(self) -> bool:
        return self.weekdays is not None

    @property
    def plain_weekdays(self) -> tuple[int, ...]:
        return tuple(d for d in self.weekdays or () if d not in self.nth)


def parse(cron: str) -> CronFields:
    """Split a valid 5-field expression (Schedule validated it) into value sets.
    Unrepresentable for what croniter reads but cannot schedule or no converter can
    write (W, the nearest weekday)."""
    raw = cron.split()
    if "w" in raw[2].lower():
        raise Unrepresentable(FIELDS[2], f"{raw[2]!r}: W (nearest weekday) cannot be converted")
    expanded, nth = croniter.expand(cron)
    minutes, hours, days, months, weekdays = expanded
    if nth and days != ["*"]:
        raise Unrepresentable(
            FIELDS[4],
            f"{raw[4]!r} (an nth or last weekday) together with day of month {raw[2]!r}: croniter "
            "does not read this as cron's 'day of month OR day of week' (it fails or drops one); "
            "use one of the two",
        )
    day_numbers = None if days == ["*"] else tuple(sorted(d for d in days if isinstance(d, int)))
    return CronFields(
        minutes=_values(minutes, range(60)),
        hours=_values(hours, range(24)),
        days=day_numbers,
        last_day=LAST in days,
        months=None if months == ["*"] else _values(months, range(1, 13)),
        weekdays=None if weekdays == ["*"] else tuple(sorted({int(d) % 7 for d in weekdays})),
        nth={int(d): frozenset(ns) for d, ns in nth.items()},
    )


def _values(values: list[int | str], full: range) -> tuple[int, ...]:
    return tuple(full) if values == ["*"] else tuple(sorted({int(v) for v in values}))


def compact(values: Iterable[int], low: int, high: int, *, systemd: bool, star: bool = True) -> str:
    """Values as `*` (all of low..high; unless not `star`), a step (start, start+step ...
    up to high) or a list whose runs of three or more are ranges. systemd style:
    `00/15`, `01..05`, two digits; cron style: `*/15`, `5-59/15`, `1-5`."""
    nums = sorted(set(values))
    text = (lambda n: f"{n:02d}") if systemd else str
    sep = ".." if systemd else "-"
    if star and nums == list(range(low, high + 1)):
        return "*"
    if len(nums) >= 3 and nums[1] - nums[0] > 1 and nums == list(range(nums[0], high + 1, nums[1] - nums[0])):
        step = nums[1] - nums[0]
        if systemd:
            return f"{text(nums[0])}/{step}"
        return f"*/{step}" if nums[0] == low and star else f"{nums[0]}-{high}/{step}"
    parts: list[str] = []
    run: list[int] = []
    for n in [*nums, None]:
        if run and (n is None or n != run[-1] + 1):
            parts.extend([f"{text(run[0])}{sep}{text(run[-1])}"] if len(run) >= 3 else map(text, run))
            run = []
        if n is not None:
            run.append(n)
    return ",".join(parts)


@dataclass(frozen=True)
class CronEntry:
    """One numeric cron line, its hours kept as a set so entries can be merged."""

    minute: str
    hours: frozenset[int]
    day: str
    month: str
    weekday: str

    def __str__(self) -> str:
        hours = compact(self.hours, 0, 23, systemd=False)
        return f"{self.minute} {hours} {self.day} {self.month} {self.weekday}"


@dataclass(frozen=True)
class CronLines:
    entries: tuple[CronEntry, ...]
    exact: bool  # False: also times the expression does not have (L and # written as plain days)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(e) for e in self.entries))


def merge(entries: Iterable[CronEntry]) -> list[CronEntry]:
    """The same times in fewer lines: entries alike but for their hours become one."""
    hours: dict[tuple[str, str, str, str], set[int]] = {}
    for e in entries:
        hours.setdefault((e.minute, e.day, e.month, e.weekday), set()).update(e.hours)
    return [CronEntry(m, frozenset(h), d, mo, w) for (m, d, mo, w), h in hours.items()]


def standard_cron(f: CronFields, offset_minutes: int = 0) -> CronLines | None:
    """Numeric 5-field lines every cron reads (Vixie/Debian cron, cronie, GitHub Actions:
    no names, no L, W or #, no wrapping ranges), at the times of `f` moved back by
    `offset_minutes` (a zone's UTC offset: local times -> UTC). A restricted field never
    starts with `*`, so "day of month OR day of week" means there what it means to
    croniter. None when a move across midnight cannot be written: with a day-of-month or
    month restriction, the day before the 1st is no fixed day."""
    days = None
    if f.days is not None:
        days = sorted({*f.days, *(range(28, 32) if f.last_day else ())})
    month = "*" if f.months is None else compact(f.months, 1, 12, systemd=False)
    by_shift: dict[int, dict[int, set[int]]] = {}
    for hour in f.hours:
        for minute in f.minutes:
            shift, rest = divmod(hour * 60 + minute - offset_minutes, 24 * 60)
            by_shift.setdefault(shift, {}).setdefault(rest // 60, set()).add(rest % 60)
    entries: list[CronEntry] = []
    for shift, hours in sorted(by_shift.items()):
        if shift and (days is not None or f.months is not None):
            return None
        dom = "*" if days is None else compact(days, 1, 31, systemd=False, star=False)
        dow = "*"
        if f.weekdays is not None:
            dow = compact({(d + shift) % 7 for d in f.weekdays}, 0, 6, systemd=False, star=False)
        for hour, minutes in sorted(hours.items()):
            entries.append(
                CronEntry(compact(minutes, 0, 59, systemd=False), frozenset({hour}), dom, month, dow)
            )
    return CronLines(tuple(merge(entries)), exact=not f.last_day and not f.nth)
