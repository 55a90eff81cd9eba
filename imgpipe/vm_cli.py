"""`imgpipe vm ...`: parse, call imgpipe.vm, render. The logic (and every heavy import)
lives in imgpipe/vm.py and imgpipe/vm_supervisor.py, imported inside the commands."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

vm_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Boot the build VM a bake would provision and keep it running, to test roles in it "
    "(the Molecule driver in molecule/ calls these).",
)

InstanceFileOpt = Annotated[
    Path | None,
    typer.Option("--instance-file", help="Where `vm up` records how to reach the VM (JSON)."),
]


def _sigterm_to_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@vm_app.command("up")
def vm_up(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The image spec (YAML).")],
    instance_file: Annotated[
        Path, typer.Option("--instance-file", help="Where to record how to reach the VM (JSON).")
    ],
    target: Annotated[
        str | None, typer.Option("--target", help="The spec's target to boot (default: its only one).")
    ] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="NAME=VALUE; highest precedence.")] = None,
    var_file: Annotated[
        list[Path] | None, typer.Option("--var-file", help="YAML or JSON variables file.")
    ] = None,
) -> None:
    """Boot the spec's build VM as `bake` would (same builder, cached base, pinned host key,
    package proxy) and keep it running after this returns, until `imgpipe vm down`."""
    from imgpipe.cli import _abort

    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        from imgpipe.errors import Interrupted
        from imgpipe.spec import load_spec
        from imgpipe.vm import VmRequest, pick_target, up

        loaded = load_spec(spec, var_file or [], var or [])
        for warning in loaded.warnings:
            typer.echo(f"warning: {warning}", err=True)
        request = VmRequest(
            spec=spec.resolve(),
            target=pick_target(list(loaded.targets), target, spec),
            instance_file=instance_file.resolve(),
            var_files=tuple(p.resolve() for p in var_file or []),
            cli_vars=tuple(var or []),
        )
        instance = up(request, progress=lambda text: typer.echo(f"  {text}", err=True))
    except BaseException as exc:  # noqa: BLE001 - rendered as one clear message
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        _abort(Interrupted("interrupted") if isinstance(exc, KeyboardInterrupt) else exc)
    import shlex

    typer.echo(f"build VM up: build {instance.build_id}, target {instance.target}")
    typer.echo(f"  reach it:  {shlex.join(instance.ssh_command())}")
    typer.echo(f"  instance:  {request.instance_file}")
    typer.echo(f"  stop it:   imgpipe vm down --instance-file {shlex.quote(str(request.instance_file))}")


@vm_app.command("down")
def vm_down(
    instance_file: InstanceFileOpt = None,
    build: Annotated[
        str | None, typer.Option("--build", help="The build id of a VM `vm up` started.")
    ] = None,
) -> None:
    """Stop a build VM `vm up` started and remove everything made for it (fine if it is gone)."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.errors import SpecError
        from imgpipe.vm import down, down_build

        if (instance_file is None) == (build is None):
            raise SpecError("give exactly one of --instance-file and --build")
        message = down(instance_file.resolve()) if instance_file is not None else down_build(str(build))
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        from imgpipe.errors import Interrupted

        _abort(Interrupted("interrupted") if isinstance(exc, KeyboardInterrupt) else exc)
    typer.echo(message)


@vm_app.command("serve", hidden=True)
def vm_serve() -> None:
    """The supervisor `vm up` starts; reads its request on stdin. Not for direct use."""
    from imgpipe.vm_supervisor import serve_stdio

    raise typer.Exit(serve_stdio())
