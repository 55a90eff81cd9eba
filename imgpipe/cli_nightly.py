"""`imgpipe nightly`: parse, run imgpipe.nightly, print the summary, write the report,
call the --on-failure hook. The decisions live in imgpipe.nightly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli_catalog import CatalogOpt

if TYPE_CHECKING:
    from imgpipe.catalog import Catalog
    from imgpipe.nightly import NightlyReport

ON_FAILURE_TIMEOUT_S = 300


def nightly(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="DIR_OR_SPEC...", help="Spec files, or directories of specs."),
    ] = None,
    output: Annotated[Path, typer.Option("--output", help="Output directory.")] = Path("output"),
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="Specs baked at once.")] = 1,
    json_out: Annotated[
        bool, typer.Option("--json", help="Events as JSON lines, then the report, on stdout.")
    ] = False,
    report_file: Annotated[
        Path | None, typer.Option("--report", metavar="FILE", help="Write the JSON report here.")
    ] = None,
    all_specs: Annotated[bool, typer.Option("--all", help="Ignore schedules: every spec is due.")] = False,
    var_file: Annotated[
        list[Path] | None,
        typer.Option("--var-file", metavar="FILE", help="Variables for every spec (before vars/<spec>.yml)."),
    ] = None,
    on_failure: Annotated[
        str | None,
        typer.Option(
            "--on-failure",
            metavar="CMD",
            help="When a bake failed: run CMD (with sh -c) with the JSON report on its standard input.",
        ),
    ] = None,
    enable: Annotated[
        list[str] | None,
        typer.Option("--enable", metavar="SPEC", help="Re-enable a spec nightly disabled after failures."),
    ] = None,
    catalog_url: CatalogOpt = None,
) -> None:
    """Bake every spec that is due and changed; skip the rest; print one summary."""
    from imgpipe.cli import _abort, _sigterm_to_interrupt
    from imgpipe.errors import Interrupted, SpecError

    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        from imgpipe.cli_catalog import open_catalog_for

        if not paths and not enable:
            raise SpecError("nightly: give spec files or directories (or --enable SPEC)")
        with open_catalog_for(catalog_url) as catalog:
            for name in enable or []:
                state = catalog.enable_spec(name)
                typer.echo(f"enabled {state.name}: nightly bakes it again")
            if not paths:
                return
            report = _run(paths, catalog, output, parallel, json_out, all_specs, var_file or [])
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        _abort(Interrupted("interrupted") if isinstance(exc, KeyboardInterrupt) else exc)
    document = report.to_json()
    if report_file is not None:
        _write_report(report_file, document)
    if json_out:
        typer.echo(json.dumps({"event": "report", **document}))
    else:
        typer.echo(render_summary(report))
    hook_failed = on_failure is not None and not report.ok and not _run_hook(on_failure, document)
    if report.interrupted:
        raise typer.Exit(130)
    if not report.ok or hook_failed:
        raise typer.Exit(1)


def _run(  # noqa: PLR0913 - the command's options, passed on
    paths: list[Path],
    catalog: Catalog,
    output: Path,
    parallel: int,
    json_out: bool,
    all_specs: bool,
    var_files: list[Path],
) -> NightlyReport:
    import threading

    from imgpipe.errors import SpecError
    from imgpipe.events import Event
    from imgpipe.nightly import NightlyOptions, run_nightly
    from imgpipe.report import JsonReporter, LineReporter
    from imgpipe.spec.discover import find_specs

    specs = find_specs(paths)
    for var_path in var_files:
        if not var_path.is_file():
            raise SpecError(f"--var-file {var_path}: no such file")
    reporter = JsonReporter() if json_out else LineReporter()
    options = NightlyOptions(output.resolve(), tuple(var_files), parallel, all_specs)
    try:
        return run_nightly(
            specs,
            catalog,
            options,
            reporter,
            lambda text: reporter.emit(Event("nightly", "message", {"text": text})),
            threading.Event(),
        )
    finally:
        reporter.close()


def render_summary(report: NightlyReport) -> str:
    """One row per spec: what was decided and why, how it ended, how long, what it made."""
    rows = [("SPEC", "DECISION", "RESULT", "TIME", "BUILD / IMAGES", "WHY")]
    for run in report.specs:
        made = run.build_id or "-"
        if run.images:
            made += " " + ", ".join(f"{t}={i}" for t, i in run.images.items())
        rows.append((run.name, run.decision, run.result.value, _duration(run.seconds), made, run.why))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5] for row in rows
    ]
    for base in report.bases:
        lines.append(f"base: {base.get('summary') or base.get('error') or base}")
    for run in report.specs:
        for where, message in run.errors.items():
            first, *rest = message.splitlines()
            lines.append(f"error: {run.name} ({where}): {first}")
            lines += [f"  {line}" for line in rest]
        if run.disabled:
            lines.append(
                f"disabled: {run.name}: {run.disabled}; `imgpipe nightly --enable {run.name}` re-enables it"
            )
    counts = report.to_json()["counts"]
    tally = ", ".join(f"{n} {result}" for result, n in counts.items() if n)
    lines.append(
        f"nightly: {len(report.specs)} specs: {tally or 'none'}"
        + (" (interrupted)" if report.interrupted else "")
    )
    return "\n".join(line.rstrip() for line in lines)


def _duration(seconds: float) -> str:
    if not seconds:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _write_report(path: Path, document: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(partial, path)


def _run_hook(command: str, document: dict[str, object]) -> bool:
    """--on-failure: the team's mail, chat or pager command; True if it exited 0."""
    try:
        done = subprocess.run(
            ["sh", "-c", command],
            input=json.dumps(document),
            text=True,
            stdout=sys.stderr,  # stdout is the report's (--json)
            timeout=ON_FAILURE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        typer.echo(
            f"error: --on-failure command ran longer than {ON_FAILURE_TIMEOUT_S} s and was stopped", err=True
        )
        return False
    if done.returncode != 0:
        typer.echo(f"error: --on-failure command exited {done.returncode}", err=True)
        return False
    typer.echo("nightly: --on-failure command ran (exit 0)", err=True)
    return True
