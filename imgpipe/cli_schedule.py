"""`imgpipe schedule ...`: show the specs' schedules and hook `imgpipe nightly` into the
schedulers teams already run (systemd timer, cron, GitHub Actions, GitLab CI). Parse,
call imgpipe.schedule, render; the logic (and every import it needs) is loaded inside
the commands."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from imgpipe.schedule.due import ScheduledSpec
    from imgpipe.schedule.install import PlannedFile, Written

schedule_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Schedule nightly: systemd timer, cron, CI. Show the specs' schedules (list); run "
    "`imgpipe nightly DIR` at them from a systemd timer or cron (install) or a CI workflow (export).",
)

DirArg = Annotated[
    Path, typer.Argument(metavar="DIR", help="The directory of specs `imgpipe nightly` runs over.")
]
TIME_FORMAT = "%Y-%m-%d %H:%M %Z"


@schedule_app.command("list")
def schedule_list(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="A directory of specs (or one spec file).")
    ],
    after: Annotated[
        str | None,
        typer.Option(
            "--after", metavar="TIME", help="Next due times after this ISO 8601 time (default: now)."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each spec's cron, zone and next due time. The next due time is shown in the
    spec's zone and in UTC; a spec without a schedule is baked on every run."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.schedule.due import next_due, read_schedules

        start = _parse_time(after)
        specs = read_schedules([directory])
        rows = [(spec, next_due(spec.schedule, start) if spec.schedule else None) for spec in specs]
    except Exception as exc:  # noqa: BLE001 - rendered as one clear message
        _abort(exc)
    if json_out:
        typer.echo(
            json.dumps({"v": 1, "after": start.isoformat(), "specs": [_row_json(*r) for r in rows]}, indent=2)
        )
        return
    table = [("SPEC", "NAME", "CRON", "ZONE", "NEXT DUE", "NEXT DUE (UTC)")]
    for spec, due in rows:
        if spec.schedule is None or due is None:
            table.append((spec.path.name, spec.name, "-", "-", "every run", "every run"))
        else:
            utc = due.astimezone(UTC)
            sched = spec.schedule
            table.append(
                (
                    spec.path.name,
                    spec.name,
                    sched.cron,
                    sched.timezone,
                    f"{due:{TIME_FORMAT}}",
                    f"{utc:{TIME_FORMAT}}",
                )
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@schedule_app.command("install")
def schedule_install(
    directory: DirArg,
    systemd: Annotated[
        bool, typer.Option("--systemd", help="Write imgpipe-nightly.service and .timer (systemd).")
    ] = False,
    cron: Annotated[bool, typer.Option("--cron", help="Write /etc/cron.d/imgpipe-nightly.")] = False,
    root: Annotated[
        Path, typer.Option("--root", metavar="ROOT", help="Write under ROOT/etc/... (default: /).")
    ] = Path("/"),
    output: Annotated[
        Path | None,
        typer.Option("--output", metavar="OUTPUT", help="Where nightly puts images (default: DIR/output)."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", metavar="FILE", help="Nightly's JSON report (default: OUTPUT/nightly-report.json)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files that differ.")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Print the files; write nothing.")] = False,
) -> None:
    """Run nightly from a systemd timer or cron. Writes a timer (one OnCalendar= per
    schedule, in its zone) and service, or a cron.d entry, that run `imgpipe nightly DIR`.
    Secrets stay out of both: they go in /etc/imgpipe/nightly.env (mode 0600)."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.errors import SpecError
        from imgpipe.schedule.install import env_file, install, nightly_argv

        if systemd == cron:
            raise SpecError("schedule install: give exactly one of --systemd or --cron")
        specs = _specs_in(directory)
        where = directory.resolve()
        out = (output or where / "output").absolute()
        command = nightly_argv(
            _imgpipe_argv(), where, out, (report or out / "nightly-report.json").absolute()
        )
        files, notes = _scheduler_files(systemd, specs, command, where)
        if print_only:
            for planned in files:
                typer.echo(f"# ==> {planned.path} <==")
                typer.echo(planned.text)
            return
        written = install([*files, env_file()], root.absolute(), force=force)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    _render_written(written, notes, systemd, root)


@schedule_app.command("export")
def schedule_export(
    directory: DirArg,
    github_actions: Annotated[
        bool, typer.Option("--github-actions", help="Print .github/workflows/imgpipe-nightly.yml.")
    ] = False,
    gitlab_ci: Annotated[
        bool, typer.Option("--gitlab-ci", help="Print a .gitlab-ci.yml job for pipeline schedules.")
    ] = False,
    runner: Annotated[
        list[str] | None,
        typer.Option(
            "--runner",
            metavar="LABEL",
            help="Runner label (repeatable): GitHub runs-on (default: self-hosted, linux, kvm), "
            "GitLab tags (default: linux, kvm).",
        ),
    ] = None,
) -> None:
    """Print a CI workflow that runs nightly. It runs `imgpipe nightly DIR` at the specs'
    schedules; the catalog URL comes from the CI's secret store, never from the file."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.errors import SpecError
        from imgpipe.schedule import ci

        if github_actions == gitlab_ci:
            raise SpecError("schedule export: give exactly one of --github-actions or --gitlab-ci")
        specs = _specs_in(directory)
        where = ci.repo_relative(directory)
        if github_actions:
            text = ci.github_actions(specs, where, datetime.now(UTC), runner or ci.GITHUB_RUNNER)
        else:
            text = ci.gitlab_ci(specs, where, runner or ci.GITLAB_TAGS)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    typer.echo(text, nl=False)


def _specs_in(directory: Path) -> list[ScheduledSpec]:
    from imgpipe.errors import SpecError
    from imgpipe.schedule.due import read_schedules

    if not directory.is_dir():
        raise SpecError(
            f"{directory}: not a directory (the scheduled `imgpipe nightly` runs over a directory of specs)"
        )
    return read_schedules([directory])


def _scheduler_files(
    systemd: bool, specs: list[ScheduledSpec], command: list[str], directory: Path
) -> tuple[list[PlannedFile], list[str]]:
    if systemd:
        from imgpipe.schedule.systemd import units

        return units(specs, command, directory)
    from imgpipe.schedule.cron import cron_file

    planned, notes = cron_file(specs, command, directory)
    return [planned], notes


def _imgpipe_argv() -> list[str]:
    """How the scheduler starts this imgpipe: the `imgpipe` script this process was started
    as; else (`python -m imgpipe.cli`) this Python with -m, which runs this very install
    (shutil.which("imgpipe") could find another one, or none, on a service's PATH)."""
    import os

    started_as = Path(sys.argv[0])
    if started_as.name == "imgpipe" and started_as.is_file() and os.access(started_as, os.X_OK):
        return [str(started_as.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "imgpipe.cli"]


def _render_written(written: list[Written], notes: list[str], systemd: bool, root: Path) -> None:
    from imgpipe.schedule.install import ENV_FILE, Outcome

    for item in written:
        if item.outcome is Outcome.kept:
            typer.echo(f"kept {item.path} (exists; imgpipe never replaces it)")
        elif item.outcome is Outcome.unchanged:
            typer.echo(f"unchanged {item.path}")
        else:
            typer.echo(f"{item.outcome} {item.path} (mode {item.mode:04o})")
        if item.warning:
            typer.echo(f"warning: {item.warning}", err=True)
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(f"secrets: put IMGPIPE_CATALOG (and AWS credentials) in {ENV_FILE}, mode 0600")
    on = "" if root.absolute() == Path("/") else f" (on the system whose root is {root})"
    if systemd:
        typer.echo(f"next{on}: systemctl daemon-reload && systemctl enable --now imgpipe-nightly.timer")
    else:
        typer.echo(f"next{on}: nothing to enable; cron reads /etc/cron.d within a minute")


def _row_json(spec: ScheduledSpec, due: datetime | None) -> dict[str, object]:
    sched = spec.schedule
    return {
        "file": str(spec.path),
        "name": spec.name,
        "cron": sched.cron if sched else None,
        "timezone": sched.timezone if sched else None,
        "next_due": due.isoformat() if due else None,
        "next_due_utc": due.astimezone(UTC).isoformat() if due else None,
        "every_run": sched is None,
    }


def _parse_time(text: str | None) -> datetime:
    from imgpipe.errors import SpecError

    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(
            f"--after {text!r}: expected an ISO 8601 time, e.g. 2025-01-01T03:00:00+01:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
