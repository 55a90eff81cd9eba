"""cron: /etc/cron.d/imgpipe-nightly, one entry per distinct schedule.

The choice: each entry only wakes `imgpipe nightly`, which bakes a spec when one of its
cron times passed since its last attempt (and it changed), so an entry that fires at a
spec's times, or a little after, is enough. Each entry is preceded by `CRON_TZ=<zone>`
of its spec, always, UTC included: cronie (Fedora, RHEL, Arch; Debian's `cronie`
package) reads the times of the entries that follow in that zone, across DST, so they
fire exactly when the spec is due. Debian's default `cron` ignores CRON_TZ and reads
every time in the system zone: there a Europe/Berlin 03:00 spec on a UTC machine is
woken at 03:00 UTC and baked then, an hour or two late; a spec in a zone west of the
system's is baked at the first run after its time, up to a day late. The file says so.
(Converting to the system zone instead would break on the next DST change or when the
machine's zone changes; an entry every hour would change "every run" for the specs
without a schedule from nightly to hourly.)

Entries are written in the numeric syntax every cron reads (no names, no L or #; those
become plain days, a superset nightly narrows). Runs do not overlap: a run that starts
while another still goes exits at once (`flock -n`), as systemd does with a busy timer.
The command reads the secrets from the env file; none are in this file."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from imgpipe.errors import SpecError
from imgpipe.schedule.cronexpr import Unrepresentable, parse, standard_cron
from imgpipe.schedule.due import ScheduledSpec
from imgpipe.schedule.install import ENV_FILE, LOCK_FILE, PlannedFile, one_line

CRON_FILE = PurePosixPath("/etc/cron.d/imgpipe-nightly")
DEFAULT_CRON = "0 3 * * *"  # no spec has a schedule: daily, in the system zone
USER = "root"


def cron_file(
    specs: Sequence[ScheduledSpec], command: Sequence[str], directory: Path
) -> tuple[PlannedFile, list[str]]:
    """The cron.d file and notes for the user. `command` is the `imgpipe nightly ...` argv."""
    entries: dict[tuple[str, str], list[str]] = {}  # (zone, 5 fields) -> spec files
    problems: list[str] = []
    for spec in specs:
        if spec.schedule is None:
            continue
        try:
            rendered = standard_cron(parse(spec.schedule.cron))
        except Unrepresentable as exc:
            problems.append(
                f"{spec.position('cron')}: schedule.cron: {spec.schedule.cron!r} cannot be written as "
                f"a cron entry: {exc.field} field: {exc.reason}"
            )
            continue
        assert rendered is not None  # no offset: always writable
        label = one_line(spec.path.name) + ("" if rendered.exact else " (L/# as plain days: nightly narrows)")
        for line in rendered.lines:
            entries.setdefault((spec.schedule.timezone, line), []).append(label)
    if problems:
        raise SpecError("\n".join(problems))
    notes = []
    unscheduled = [s.path.name for s in specs if s.schedule is None]
    run = _command(command, directory)
    lines = _header(directory)
    if not entries:
        notes.append("no spec has a schedule: the entry runs daily at 03:00 in the system time zone")
        lines += [
            "# No spec has a schedule: daily at 03:00 in the system time zone.",
            f"{DEFAULT_CRON} {USER} {run}",
        ]
    elif unscheduled:
        notes.append(
            f"{len(unscheduled)} spec(s) without a schedule ({', '.join(unscheduled)}) are baked, when "
            "changed, on every run"
        )
        lines.append(
            f"# No schedule (baked, when changed, on every run): {', '.join(map(one_line, unscheduled))}"
        )
    for (zone, fields), labels in entries.items():
        lines += ["", f"# {', '.join(labels)}", f"CRON_TZ={zone}", f"{fields} {USER} {run}"]
    if any(zone != "UTC" for zone, _ in entries):
        notes.append(
            "CRON_TZ: cronie reads each entry's times in its spec's zone; Debian's default cron ignores "
            "CRON_TZ and reads them in the system zone (nightly still bakes each spec, possibly late)"
        )
    return PlannedFile(CRON_FILE, "\n".join(lines) + "\n", 0o644), notes


def _header(directory: Path) -> list[str]:
    return [
        "# Written by `imgpipe schedule install --cron`: wakes `imgpipe nightly` over",
        f"# {one_line(str(directory))}; nightly bakes a spec when one of its cron times passed since its",
        "# last attempt and it changed. CRON_TZ: cronie reads the times of the entries below it in",
        "# that zone; Debian's default cron ignores it and reads them in the system zone (a spec is",
        "# then baked at the first run after its time). A run while another still goes exits at once.",
        f"# No secrets here: IMGPIPE_CATALOG and AWS credentials go in {ENV_FILE} (mode 0600).",
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]


def _command(command: Sequence[str], directory: Path) -> str:
    """cd DIR && flock -n LOCK sh -c '<read the env file>; exec "$@"' imgpipe-nightly ARGV...
    with every argument quoted, and % (a line break to cron) escaped."""
    for arg in (*command, str(directory)):
        if "\n" in arg or "\r" in arg:
            raise SpecError(f"{arg!r}: a path with a line break cannot go in a cron entry")
    env = shlex.quote(str(ENV_FILE))
    script = f'set -a; [ ! -r {env} ] || . {env}; set +a; exec "$@"'
    argv = ["flock", "-n", str(LOCK_FILE), "sh", "-c", script, "imgpipe-nightly", *command]
    text = f"cd {shlex.quote(str(directory))} && {shlex.join(argv)}"
    return text.replace("%", "\\%")
