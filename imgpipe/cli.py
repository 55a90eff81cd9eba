"""The imgpipe command line: parse, call the core, render. No build logic here;
heavy modules (ansible_runner, libvirt, boto3) load only inside the commands
that need them, so `imgpipe --help` starts fast."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from imgpipe import __version__
from imgpipe.cli_catalog import CatalogOpt, register
from imgpipe.cli_channels import channels, promote
from imgpipe.cli_doctor import register as register_doctor
from imgpipe.cli_nightly import nightly
from imgpipe.cli_prune import register as register_prune
from imgpipe.cli_revoke import revoke
from imgpipe.cli_schedule import schedule_app  # light, as vm_app
from imgpipe.vm_cli import vm_app  # light: its commands import their logic when run

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from imgpipe.catalog import Catalog
    from imgpipe.errors import ImgpipeError
    from imgpipe.events import EventSink
    from imgpipe.gc import Sweep
    from imgpipe.recorded_bake import Decision
    from imgpipe.spec.load import LoadedSpec
    from imgpipe.spec.variables import ResolvedVar

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Bake machine images from a YAML spec and your existing Ansible roles.",
)
app.add_typer(vm_app, name="vm")  # imgpipe vm up/down: the Molecule driver's VM
app.add_typer(schedule_app, name="schedule")  # list, install (systemd/cron), export (CI)
register(app)  # status, builds, show
app.command()(nightly)
app.command()(promote)
app.command()(channels)
register_doctor(app)  # doctor: is this host ready to bake
register_prune(app)  # prune
app.command()(revoke)  # imgpipe.cli_revoke

_DEBUG = False


def _abort(exc: BaseException) -> NoReturn:
    """Every error ends here: one clear message and its exit code; a traceback only with --debug."""
    from imgpipe.errors import ImgpipeError

    if _DEBUG:
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, ImgpipeError):
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code)
    typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (--debug shows details)", err=True)
    raise typer.Exit(1)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgpipe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _DEBUG
    _DEBUG = debug


SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="The image spec (YAML).")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="NAME=VALUE; highest precedence.")]
VarFileOpt = Annotated[list[Path] | None, typer.Option("--var-file", help="YAML or JSON variables file.")]


def _load(
    spec: Path, var_file: list[Path] | None, var: list[str] | None
) -> tuple[LoadedSpec, dict[str, ResolvedVar]]:
    from imgpipe.errors import SpecError
    from imgpipe.roles import reference_problems
    from imgpipe.spec import load_spec

    loaded = load_spec(spec, var_file or [], var or [])
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    variables = loaded.variables
    for name, value in sorted(variables.items()):
        if value.sensitive and value.origin == "--var":
            typer.echo(
                f"warning: sensitive variable '{name}' was given with --var: command lines are visible "
                f"to every user of this machine; use --var-file or IMGPIPE_VAR_{name}",
                err=True,
            )
    problems = reference_problems(loaded)
    if problems:
        raise SpecError("\n".join([f"{loaded.path}: invalid spec", *("  " + p for p in problems)]))
    return loaded, variables


def _select_targets(names: list[str], only: list[str], exclude: list[str]) -> tuple[str, ...]:
    from imgpipe.errors import SpecError
    from imgpipe.spec.problems import suggestion

    for flag, chosen in (("--only", only), ("--except", exclude)):
        for name in chosen:
            if name not in names:
                raise SpecError(
                    f"{flag} {name}: no such target{suggestion(name, names)} (targets: {', '.join(names)})"
                )
    selected = tuple(n for n in names if (not only or n in only) and n not in exclude)
    if not selected:
        raise SpecError("--only/--except leave no target to bake")
    return selected


@app.command()
def validate(spec: SpecArg, var: VarOpt = None, var_file: VarFileOpt = None) -> None:
    """Check spec, variables, roles and playbooks (Ansible syntax check) without building."""
    try:
        loaded, _variables = _load(spec, var_file, var)
        from imgpipe.provision import syntax_check

        syntax_check(loaded)
    except Exception as exc:  # noqa: BLE001 - rendered as one clear message
        _abort(exc)
    typer.echo(f"{spec}: ok ({len(loaded.spec.targets)} target(s))")


@app.command()
def inspect(
    spec: SpecArg,
    var: VarOpt = None,
    var_file: VarFileOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Print the resolved plan: targets, source, roles and their paths, variables and their origins."""
    try:
        loaded, variables = _load(spec, var_file, var)
        from imgpipe.plan import render_plan, resolved_plan

        plan = resolved_plan(loaded, variables)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        import json

        typer.echo(json.dumps(plan, indent=2))
    else:
        typer.echo(render_plan(plan))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec (for editor completion via yaml-language-server)."""
    import json

    from imgpipe.spec.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to scaffold (default: here).")] = Path("."),
    name: Annotated[str, typer.Option("--name", help="Image name.")] = "my-image",
) -> None:
    """Scaffold a spec, a roles/ folder with one role, and an image test."""
    try:
        from imgpipe.scaffold import scaffold

        done = scaffold(directory, name)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    for path in done.written:
        typer.echo(f"wrote {path}")
    for path in done.skipped:
        typer.echo(f"skipped {path}: already exists (imgpipe init never overwrites files)")
    typer.echo(f"next: imgpipe validate {directory / 'image.yml'}")


@app.command()
def bake(
    spec: SpecArg,
    only: Annotated[list[str] | None, typer.Option("--only", help="Bake only this target.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--except", help="Do not bake this target.")] = None,
    var: VarOpt = None,
    var_file: VarFileOpt = None,
    output: Annotated[Path, typer.Option("--output", help="Output directory.")] = Path("output"),
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="cleanup: remove a failed VM; abort: keep it for debugging; ask (on a terminal): "
            "choose, or retry the failed stage.",
        ),
    ] = "cleanup",
    parallel: Annotated[
        int | None, typer.Option("--parallel", min=1, help="Targets baked at once (default: all).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per event on stdout.")] = False,
    if_changed: Annotated[
        bool,
        typer.Option(
            "--if-changed",
            help="Bake nothing when the catalog holds a good build of each selected target with the "
            "same inputs (fingerprint) whose artifacts still exist.",
        ),
    ] = False,
    catalog_url: CatalogOpt = None,
    shared_manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Also append this build's records to one shared manifest file (Packer's manifest "
            "post-processor: scripts read .builds[-1]).",
        ),
    ] = None,
) -> None:
    """Bake the spec's targets, in parallel, into OUTPUT/<name>/<build-id>/."""
    from imgpipe.errors import Interrupted, SpecError

    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        from imgpipe.pipeline import BakeOptions, OnError
        from imgpipe.recorded_bake import recorded_bake
        from imgpipe.report import make_reporter

        if on_error not in ("cleanup", "abort", "ask"):
            raise SpecError(f"--on-error {on_error!r}: expected 'cleanup', 'abort' or 'ask'")
        asker = None
        if on_error == "ask":
            from imgpipe.ask import TerminalAsker, require_terminal

            require_terminal()
            asker = TerminalAsker()
        loaded, variables = _load(spec, var_file, var)
        targets = _select_targets(list(loaded.spec.targets), only or [], exclude or [])
        if shared_manifest is not None:
            from imgpipe.manifest_log import check_appendable

            check_appendable(shared_manifest)
        catalog = _catalog_for_bake(catalog_url, loaded)
        options = BakeOptions(output.resolve(), targets, variables, OnError(on_error), parallel, ask=asker)
        reporters = []

        def on_decision(decision: Decision) -> EventSink:
            if decision.up_to_date:
                ids = (str(s.build_id) for s in decision.statuses)
                typer.echo("up to date: " + ", ".join(dict.fromkeys(ids)))
            for reason in decision.reasons():
                typer.echo(reason, err=True)
            reporters.append(make_reporter(list(decision.targets), json_out))
            return reporters[-1]

        try:
            baked = recorded_bake(
                catalog, loaded, options, None, if_changed=if_changed, on_decision=on_decision
            )
        finally:
            for reporter in reporters:
                reporter.close()
            catalog.close()
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        _abort(Interrupted("interrupted") if isinstance(exc, KeyboardInterrupt) else exc)
    if baked.result is not None:
        if shared_manifest is not None:
            _append_manifest(shared_manifest, baked.result.output_dir / "manifest.json")
        _render_result(baked.result, json_out)


def _append_manifest(shared: Path, build_manifest: Path) -> None:
    from imgpipe.manifest_log import append_builds

    if not build_manifest.exists():
        return
    try:
        append_builds(shared, build_manifest)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)


def _catalog_for_bake(url: str | None, loaded: LoadedSpec) -> Catalog:
    """The catalog a bake records itself in: this spec's abandoned builds reaped, and its
    name claimed (another spec of the same name elsewhere is refused)."""
    from imgpipe.cli_catalog import open_catalog_for
    from imgpipe.history import spec_origin

    catalog = open_catalog_for(url)
    catalog.claim_spec(loaded.spec.name, spec_origin(loaded.path))
    return catalog


def _render_result(result, json_out: bool) -> None:  # type: ignore[no-untyped-def]
    manifest = result.output_dir / "manifest.json"
    if json_out:
        from imgpipe.report import JsonReporter

        JsonReporter().write(
            {
                "event": "result",
                "ok": result.ok,
                "build_id": result.build_id,
                "manifest": str(manifest),
                "images": {
                    r.target: str(result.output_dir / str(r.artifact_id)) for r in result.records if r.ok
                },
                "errors": {t: str(e) for t, e in result.errors.items()},
            }
        )
    else:
        for record in result.records:
            if record.ok:
                typer.echo(f"{record.target}: {result.output_dir / str(record.artifact_id)}")
        for target, err in result.errors.items():
            typer.echo(f"error: target {target}: {err}", err=True)
        typer.echo(f"manifest: {manifest}")
    if not result.ok:
        raise typer.Exit(_bake_exit_code(result.errors))


def _bake_exit_code(errors: Mapping[str, ImgpipeError]) -> int:
    """130 if any target was interrupted; 2 if every failed target failed on bad input (a
    SpecError found before it built anything, e.g. no AMI matches source_ami_filter), as
    for a spec error found at load time; otherwise 1, a build failed."""
    codes = {err.exit_code for err in errors.values()}
    if 130 in codes:
        return 130
    return 2 if codes == {2} else 1


def _sigterm_to_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def gc(
    build: Annotated[
        str | None, typer.Option("--build", help="Remove this build's resources, even if kept.")
    ] = None,
    aws_region: Annotated[
        list[str] | None,
        typer.Option(
            "--aws-region",
            help="Also sweep this EC2 region for build instances, security groups, key pairs, "
            "unpublished AMIs and snapshots and aws-import tasks tagged imgpipe:build-id whose "
            "journal is gone (repeatable).",
        ),
    ] = None,
    aws_bucket: Annotated[
        list[str] | None,
        typer.Option(
            "--aws-bucket",
            help="Also sweep this S3 bucket (BUCKET or BUCKET/PREFIX/; default prefix imgpipe-import/) "
            "for aws-import objects and unfinished uploads of old builds (repeatable).",
        ),
    ] = None,
    older_than_hours: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            help="Only builds started this many hours ago (journal: default any age; --aws-region: 6).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed and why; change nothing.")
    ] = False,
    catalog_url: CatalogOpt = None,
) -> None:
    """Remove temporary resources left by killed builds (or kept by --on-error abort), and
    mark their catalog records abandoned."""
    from imgpipe.gc import (
        SWEEP_MIN_AGE_H,
        apply_journal,
        plan_bucket_sweeps,
        plan_journal,
        plan_region_sweeps,
    )
    from imgpipe.paths import state_dir

    journal_dir = state_dir() / "journal"
    older_than_s = None if older_than_hours is None else older_than_hours * 3600
    plan = plan_journal(journal_dir, build, older_than_s)
    verb = "would remove" if dry_run else "removing"
    for action in plan.removals:
        typer.echo(f"{verb} build {action.build_id} target {action.target} ({action.reason}):")
        for res in action.resources:
            typer.echo(f"  {res['kind']} {_describe_args(res['args'])}")
    for action in plan.kept:
        typer.echo(f"keeping build {action.build_id} target {action.target}: {action.reason}")
    failures = []
    if not dry_run:
        removed, failures = apply_journal(plan)
        for action in removed:
            count = len(action.resources)
            typer.echo(f"removed {count} resource(s) of build {action.build_id} target {action.target}")
        for failure in failures:
            typer.echo(f"error: {failure}", err=True)
    sweep_hours = SWEEP_MIN_AGE_H if older_than_hours is None else older_than_hours
    if aws_region:
        _render_sweeps(plan_region_sweeps(aws_region, sweep_hours, journal_dir), sweep_hours, dry_run)
    if aws_bucket:
        bucket_region = (aws_region or [None])[0]
        sweeps = plan_bucket_sweeps(aws_bucket, bucket_region, sweep_hours, journal_dir)
        _render_sweeps(sweeps, sweep_hours, dry_run)
    if not dry_run:
        _reap_catalog(catalog_url)
    if not (aws_region or aws_bucket or plan.journal):
        typer.echo("nothing to remove")
    if failures:
        raise typer.Exit(1)


def _reap_catalog(url: str | None) -> None:
    from imgpipe.catalog import open_catalog

    try:
        with open_catalog(url) as catalog:
            for build_id in catalog.reap_abandoned():
                typer.echo(f"marked build {build_id} abandoned in the catalog (its bake is gone)")
    except Exception as exc:  # noqa: BLE001
        _abort(exc)


def _describe_args(args: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in args.items())


def _render_sweeps(sweeps: Iterator[Sweep], hours: float, dry_run: bool) -> None:
    from imgpipe.errors import ImgpipeError

    try:
        for sweep in sweeps:
            for leftover in sweep.found:
                typer.echo(f"{'would remove' if dry_run else 'removing'} {leftover} in {sweep.where}")
            if not sweep.found:
                typer.echo(f"{sweep.where}: no leftover build resources older than {hours:g} h")
            elif not dry_run:
                sweep.apply()
    except ImgpipeError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    import typer.main

    from imgpipe.cli_help import name_placeholders

    command = typer.main.get_command(app)
    name_placeholders(command)
    try:
        command(args=_debug_first(sys.argv[1:]), prog_name="imgpipe")
    except KeyboardInterrupt:
        sys.exit(130)


def _debug_first(args: list[str]) -> list[str]:
    """`--debug` is accepted after the subcommand too (`imgpipe bake --debug spec.yml`), as
    Packer's users type it: it moves in front, where it is defined. After `--` it is data."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]


if __name__ == "__main__":
    main()
