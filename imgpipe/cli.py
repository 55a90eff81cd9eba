"""The imgpipe command line: parse, call the core, render. No build logic here."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from imgpipe import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Bake machine images from a YAML spec and your existing Ansible roles.",
)

_DEBUG = False


def _abort(exc: BaseException) -> NoReturn:
    from imgpipe.errors import ImgpipeError

    if _DEBUG:
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, ImgpipeError):
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code)
    typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
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


SpecArg = Annotated[Path, typer.Argument(help="The image spec (YAML).")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="NAME=VALUE, highest precedence.")]
VarFileOpt = Annotated[list[Path] | None, typer.Option("--var-file", help="YAML/JSON variables file.")]


def _select_targets(names: list[str], only: list[str]) -> tuple[str, ...]:
    from imgpipe.errors import SpecError
    from imgpipe.spec.problems import suggestion

    for name in only:
        if name not in names:
            raise SpecError(
                f"--only {name}: no such target{suggestion(name, names)} (targets: {', '.join(names)})"
            )
    return tuple(n for n in names if not only or n in only)


@app.command()
def validate(spec: SpecArg, var: VarOpt = None, var_file: VarFileOpt = None) -> None:
    """Check a spec and its variables without building anything."""
    from imgpipe.spec import load_spec
    from imgpipe.spec.variables import resolve_variables

    try:
        loaded = load_spec(spec)
        resolve_variables(loaded, var_file or [], var or [])
        _check_roles(loaded)
    except Exception as exc:  # noqa: BLE001 - rendered as one clear message
        _abort(exc)
    typer.echo(f"{spec}: ok ({len(loaded.spec.targets)} target(s))")


def _check_roles(loaded):  # type: ignore[no-untyped-def]
    from imgpipe.errors import SpecError
    from imgpipe.roles import reference_problems

    problems = reference_problems(loaded)
    if problems:
        raise SpecError("\n".join([f"{loaded.path}: invalid spec", *("  " + p for p in problems)]))


@app.command()
def bake(
    spec: SpecArg,
    only: Annotated[list[str] | None, typer.Option("--only", help="Bake only this target.")] = None,
    var: VarOpt = None,
    var_file: VarFileOpt = None,
    output: Annotated[Path, typer.Option("--output", help="Output directory.")] = Path("output"),
    on_error: Annotated[
        str, typer.Option("--on-error", help="cleanup: remove the failed VM; abort: keep it for debugging.")
    ] = "cleanup",
) -> None:
    """Bake the spec's targets into images under OUTPUT/<name>/<build-id>/."""
    from imgpipe.errors import Interrupted, SpecError

    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        from imgpipe.pipeline import BakeOptions, OnError
        from imgpipe.pipeline import bake as run_bake
        from imgpipe.report import make_reporter
        from imgpipe.spec import load_spec
        from imgpipe.spec.variables import resolve_variables

        if on_error not in ("cleanup", "abort"):
            raise SpecError(f"--on-error {on_error!r}: expected 'cleanup' or 'abort'")
        loaded = load_spec(spec)
        variables = resolve_variables(loaded, var_file or [], var or [])
        _check_roles(loaded)
        targets = _select_targets(list(loaded.spec.targets), only or [])
        options = BakeOptions(output.resolve(), targets, variables, OnError(on_error))
        reporter = make_reporter(list(targets))
        try:
            result = run_bake(loaded, options, reporter)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
        finally:
            reporter.close()
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        _abort(Interrupted("interrupted") if isinstance(exc, KeyboardInterrupt) else exc)
    for record in result.records:
        if record.ok:
            typer.echo(f"{record.target}: {result.output_dir / str(record.artifact_id)}")
    for target, err in result.errors.items():
        typer.echo(f"error: target {target}: {err}", err=True)
    typer.echo(f"manifest: {result.output_dir / 'manifest.json'}")
    if not result.ok:
        codes = {err.exit_code for err in result.errors.values()}
        raise typer.Exit(130 if 130 in codes else 1)


def _sigterm_to_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def gc(
    build: Annotated[
        str | None, typer.Option("--build", help="Remove this build's resources, even if kept.")
    ] = None,
) -> None:
    """Remove temporary resources left by killed or --on-error abort builds."""
    from imgpipe.journal import collect
    from imgpipe.paths import state_dir

    removed, failures = collect(state_dir() / "journal", build)
    for orphan in removed:
        rec = orphan.record
        typer.echo(
            f"removed {len(rec['resources'])} resource(s) of build {rec['build_id']} target {rec['target']}"
        )
    for failure in failures:
        typer.echo(f"error: {failure}", err=True)
    if not removed and not failures:
        typer.echo("nothing to remove")
    if failures:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
