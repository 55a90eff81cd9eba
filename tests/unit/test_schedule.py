"""Schedules: due logic (croniter in the spec's zone, across DST), reading a spec's
`schedule:` alone, and the conversions to systemd OnCalendar= and UTC cron."""

import subprocess
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from imgpipe.errors import SpecError
from imgpipe.schedule.ci import utc_schedule
from imgpipe.schedule.cronexpr import parse, standard_cron
from imgpipe.schedule.due import is_due, next_due, read_schedule, spec_schedule
from imgpipe.schedule.systemd import on_calendar, spec_calendars
from imgpipe.spec.model import Schedule
from tests.conftest import write

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTLY = Schedule(cron="0 3 * * *", timezone="Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def spec_file(tmp_path, schedule: str, name: str = "spec.yml"):
    text = f"imgpipe: 1\nname: x\n{schedule}targets: {{local: {{builder: libvirt}}}}\n"
    return write(tmp_path / name, text)


def test_a_run_at_0307_bakes_a_spec_due_at_0300():
    assert is_due(NIGHTLY, last_attempt=berlin(2025, 6, 1, 3, 5), now=berlin(2025, 6, 2, 3, 7))
    assert is_due(NIGHTLY, last_attempt=berlin(2025, 6, 1, 3, 5), now=berlin(2025, 6, 2, 3, 0))


def test_not_due_again_once_attempted_after_its_time():
    assert not is_due(NIGHTLY, last_attempt=berlin(2025, 6, 2, 3, 1), now=berlin(2025, 6, 2, 9, 0))
    assert not is_due(NIGHTLY, last_attempt=berlin(2025, 6, 2, 3, 0), now=berlin(2025, 6, 3, 2, 59))
    assert is_due(NIGHTLY, last_attempt=berlin(2025, 6, 2, 3, 0), now=berlin(2025, 6, 3, 3, 0))


def test_never_attempted_or_unscheduled_is_due():
    assert is_due(NIGHTLY, last_attempt=None, now=berlin(2025, 6, 2, 12, 0))
    assert is_due(None, last_attempt=berlin(2025, 6, 2, 11, 59), now=berlin(2025, 6, 2, 12, 0))


def test_zone_decides_the_utc_time():
    """03:00 in Berlin is 01:00 UTC in summer, 02:00 UTC in winter; comparing in UTC works."""
    assert next_due(NIGHTLY, datetime(2025, 7, 1, tzinfo=UTC)) == datetime(2025, 7, 1, 1, 0, tzinfo=UTC)
    assert next_due(NIGHTLY, datetime(2025, 1, 1, tzinfo=UTC)) == datetime(2025, 1, 1, 2, 0, tzinfo=UTC)
    last = datetime(2025, 1, 1, 2, 30, tzinfo=UTC)
    assert not is_due(NIGHTLY, last, datetime(2025, 1, 2, 1, 59, tzinfo=UTC))
    assert is_due(NIGHTLY, last, datetime(2025, 1, 2, 2, 0, tzinfo=UTC))


def test_spring_dst_change_neither_skips_nor_delays_a_day():
    """2025-03-30 02:00 CET -> 03:00 CEST: that day has 23 hours."""
    before = berlin(2025, 3, 29, 3, 0)
    due = next_due(NIGHTLY, before)
    assert due == berlin(2025, 3, 30, 3, 0)
    assert due.astimezone(UTC) - before.astimezone(UTC) == timedelta(hours=23)  # same-zone "-" is wall time
    assert due.astimezone(UTC) == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    # a time inside the skipped hour still comes that day, right after the change
    gap = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    moved = next_due(gap, berlin(2025, 3, 29, 12, 0)).astimezone(UTC)
    assert datetime(2025, 3, 30, 1, 0, tzinfo=UTC) <= moved < datetime(2025, 3, 30, 2, 0, tzinfo=UTC)
    assert is_due(gap, berlin(2025, 3, 29, 12, 0), datetime(2025, 3, 30, 1, 45, tzinfo=UTC))


def test_autumn_dst_change_gives_a_25_hour_day():
    """2025-10-26 03:00 CEST -> 02:00 CET; 02:30 happens twice, 03:00 once."""
    before = berlin(2025, 10, 25, 3, 0)
    due = next_due(NIGHTLY, before)
    assert due.astimezone(UTC) - before.astimezone(UTC) == timedelta(hours=25)
    assert due.astimezone(UTC) == datetime(2025, 10, 26, 2, 0, tzinfo=UTC)
    twice = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    first = next_due(twice, berlin(2025, 10, 25, 12, 0))
    assert first.astimezone(UTC) == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    assert next_due(twice, first).astimezone(UTC) == datetime(2025, 10, 26, 1, 30, tzinfo=UTC)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="naive"):
        is_due(NIGHTLY, None, datetime(2025, 1, 1, 3, 0))
    with pytest.raises(ValueError, match="naive"):
        next_due(NIGHTLY, datetime(2025, 1, 1, 3, 0))


def test_schedule_read_without_the_spec_variables(tmp_path):
    """A spec whose required variable is unset still has a schedule."""
    path = write(
        tmp_path / "web.yml",
        "imgpipe: 1\nname: web\nvariables: {token: {type: string, required: true}}\n"
        "schedule: {cron: '0 3 * * *', timezone: Europe/Berlin}\n"
        "targets: {local: {builder: libvirt, memory_mb: '{{ token }}'}}\n",
    )
    assert spec_schedule(path) == NIGHTLY
    assert read_schedule(path).name == "web"
    assert spec_schedule(spec_file(tmp_path, "", "none.yml")) is None


def test_invalid_schedule_names_file_line_and_field(tmp_path):
    path = spec_file(tmp_path, "schedule:\n  cron: '0 3 * * *'\n  timezone: Europe/Berlinn\n")
    with pytest.raises(SpecError) as err:
        spec_schedule(path)
    assert f"{path}:5:13: schedule.timezone:" in str(err.value) and "IANA" in str(err.value)
    assert err.value.exit_code == 2
    path = spec_file(tmp_path, "schedule: {cron: '{{ when }}'}\n", "templated.yml")
    with pytest.raises(SpecError, match=r"templated.yml:3:18: schedule.cron: variables"):
        spec_schedule(path)


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 3 1 * mon#2"])
def test_a_cron_that_never_fires_is_a_located_error(tmp_path, cron):
    path = spec_file(tmp_path, f"schedule: {{cron: '{cron}'}}\n")
    with pytest.raises(SpecError, match=r"spec.yml:3:\d+: schedule.cron: .* never fires"):
        spec_schedule(path)


@pytest.mark.parametrize(
    ("cron", "zone", "expected"),
    [
        ("0 3 * * *", "Europe/Berlin", ["*-*-* 03:00:00 Europe/Berlin"]),
        ("*/15 * * * *", "UTC", ["*-*-* *:00/15:00 UTC"]),
        ("5/20 1-5 * * *", "UTC", ["*-*-* 01..05:05/20:00 UTC"]),
        ("30 2 * * mon-fri", "UTC", ["Mon..Fri *-*-* 02:30:00 UTC"]),
        ("0 3 * * 5-2", "UTC", ["Mon,Tue,Fri..Sun *-*-* 03:00:00 UTC"]),
        ("0 3 * * 0,7", "UTC", ["Sun *-*-* 03:00:00 UTC"]),
        ("0 22-2 * * *", "UTC", ["*-*-* 00..02,22,23:00:00 UTC"]),
        ("0 3 1,15 jan-mar/2 *", "UTC", ["*-01,03-01,15 03:00:00 UTC"]),
        ("0 3 1 * mon", "UTC", ["*-*-01 03:00:00 UTC", "Mon *-*-* 03:00:00 UTC"]),
        ("0 3 L * *", "UTC", ["*-*~01 03:00:00 UTC"]),
        ("0 3 * * mon#2", "UTC", ["Mon *-*-08..14 03:00:00 UTC"]),
        ("0 3 * * L5", "UTC", ["Fri *-*~07/1 03:00:00 UTC"]),
    ],
)
def test_cron_to_on_calendar(cron, zone, expected):
    assert on_calendar(cron, zone) == expected


CROSS_CHECKED = [
    ("0 3 * * *", "Europe/Berlin"),
    ("*/15 1-5 * * mon-fri", "Asia/Kolkata"),
    ("0 22-2 * * sat,sun", "America/New_York"),
    ("0 3 1 * mon", "UTC"),
    ("0 3 L * *", "Europe/Berlin"),
    ("0 4 * * L5", "UTC"),
    ("0 3 * * tue#3", "Australia/Sydney"),
    ("10 6 1-10/3 jan-mar/2 *", "UTC"),
    ("30 2 * * sun", "Europe/Berlin"),
]


def systemd_elapses(expression: str, base: datetime, iterations: int = 40) -> list[datetime]:
    """systemd's own evaluation of an OnCalendar= expression (not ours), in UTC."""
    proc = subprocess.run(
        [
            "systemd-analyze",
            "calendar",
            f"--iterations={iterations}",
            f"--base-time=@{int(base.timestamp())}",
            expression,
        ],
        capture_output=True,
        text=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    elapses = []
    for line in proc.stdout.splitlines():
        label, _, value = line.strip().partition(": ")
        if label == "Next elapse" or label.startswith("Iter."):
            elapses.append(datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC))
    assert len(elapses) == iterations, proc.stdout
    return elapses


@pytest.mark.parametrize(("cron", "zone"), CROSS_CHECKED)
def test_on_calendar_elapses_when_croniter_says(cron, zone):
    """Over 40 cron times from just before the spring DST changes in America and Europe.
    Left out, the two DST corners: a time croniter moves out of the hour a spring change
    skips (systemd skips it; the next test) and the second of a wall time an autumn
    change repeats (systemd elapses once; nightly bakes once anyway)."""
    base = datetime(2025, 3, 1, tzinfo=UTC)
    fields = parse(cron)
    it = croniter(cron, base.astimezone(ZoneInfo(zone)))
    times = [it.get_next(datetime) for _ in range(40)]
    # (in UTC: aware datetimes of one zone compare by wall time, so both 02:30s look equal)
    moved = {t.astimezone(UTC) for t in times if t.hour not in fields.hours or t.minute not in fields.minutes}
    walls = [t.replace(tzinfo=None) for t in times]
    repeated = {t.astimezone(UTC) for i, t in enumerate(times) if walls[i] in walls[:i]}
    expected = [u for u in (t.astimezone(UTC) for t in times) if u not in moved | repeated]
    assert len(moved) + len(repeated) <= 2
    elapses = sorted({t for e in on_calendar(cron, zone) for t in systemd_elapses(e, base)})
    assert [t for t in elapses if t <= expected[-1]] == expected


def test_a_time_in_the_skipped_dst_hour_is_baked_at_the_next_elapse():
    """The one documented difference: on 2025-03-30 Berlin skips 02:00-03:00. croniter
    moves 02:30 to 03:00 CEST, systemd does not elapse that day; at its next elapse
    nightly finds the spec due, so it is baked a day late, not lost."""
    gap = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    (expression,) = on_calendar(gap.cron, gap.timezone)
    last_attempt = datetime(2025, 3, 29, 1, 30, tzinfo=UTC)  # 02:30 CET
    first, second = systemd_elapses(expression, last_attempt, 2)
    assert (first, second) == (
        datetime(2025, 3, 31, 0, 30, tzinfo=UTC),
        datetime(2025, 4, 1, 0, 30, tzinfo=UTC),
    )
    assert next_due(gap, last_attempt).astimezone(UTC) == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert is_due(gap, last_attempt, first)


def test_unrepresentable_cron_is_a_located_error(tmp_path):
    path = spec_file(tmp_path, "schedule:\n  cron: '0 3 15W * *'\n")
    spec = read_schedule(path)
    with pytest.raises(SpecError) as err:
        spec_calendars(spec)
    text = str(err.value)
    assert f"{path}:4:9: schedule.cron: '0 3 15W * *'" in text and "day of month field" in text


def test_utc_conversion_exact_for_fixed_zones_and_covering_for_dst(tmp_path):
    now = datetime(2025, 1, 1, tzinfo=UTC)
    tokyo = read_schedule(spec_file(tmp_path, "schedule: {cron: '30 3 * * mon', timezone: Asia/Tokyo}\n"))
    converted = utc_schedule(tokyo, now)
    assert converted.lines == ("30 18 * * 0",) and converted.how == "exact"
    local = croniter("30 3 * * mon", now.astimezone(ZoneInfo("Asia/Tokyo")))
    utc = croniter("30 18 * * 0", now)
    assert [local.get_next(datetime) for _ in range(10)] == [utc.get_next(datetime) for _ in range(10)]
    berlin_spec = read_schedule(
        spec_file(tmp_path, "schedule: {cron: '0 3 * * *', timezone: Europe/Berlin}\n")
    )
    dst = utc_schedule(berlin_spec, now)
    assert dst.lines == ("0 1,2 * * *",) and "DST" in dst.how and "nightly bakes it when due" in dst.how
    monthly = read_schedule(spec_file(tmp_path, "schedule: {cron: '0 3 1 * *', timezone: Asia/Tokyo}\n"))
    hourly = utc_schedule(monthly, now)
    assert (
        hourly.lines == ("0 18 * * *",) and "daily" in hourly.how
    )  # 03:00 on the 1st: 18:00 UTC the day before


def test_numeric_cron_keeps_croniters_or_of_days():
    """A restricted field written from a set never starts with '*': for cron a leading '*'
    turns 'day of month OR day of week' into AND."""
    rendered = standard_cron(parse("0 3 1-31 * sun-sat/2"))
    assert rendered is not None and rendered.lines == ("0 3 1-31 * 0-6/2",)
    assert standard_cron(parse("0 3 * * 1-5")).lines == ("0 3 * * 1-5",)


@pytest.mark.parametrize(
    ("cron", "zone"), [*CROSS_CHECKED, ("0 3 1 * *", "Europe/Berlin"), ("0 0 1 * *", "Asia/Tokyo")]
)
def test_utc_crons_fire_at_every_due_time(tmp_path, cron, zone):
    """A UTC workflow may wake nightly more often than due, but after each due time it
    runs before the next one (at that time, but for croniter's move out of a DST gap)."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    spec = read_schedule(spec_file(tmp_path, f"schedule: {{cron: '{cron}', timezone: {zone}}}\n"))
    lines = utc_schedule(spec, start).lines
    fields = parse(cron)
    times = croniter(cron, start.astimezone(ZoneInfo(zone)))
    due = times.get_next(datetime)
    for _ in range(200):
        following = times.get_next(datetime)
        moved = due.hour not in fields.hours or due.minute not in fields.minutes
        at, until = due.astimezone(UTC), following.astimezone(UTC)  # (== across zones fails in a DST fold)
        wake = min(croniter(line, at - timedelta(seconds=1)).get_next(datetime) for line in lines)
        assert wake == at or (moved and at < wake < until), (due, wake, lines)
        due = following
