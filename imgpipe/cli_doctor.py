"""`imgpipe doctor`: parse, ask imgpipe.doctor, render one line per check (or the JSON
envelope `{"v": 1, "checks": [...], "ok": bool}` for scripts). Exit 1 when a check says a
bake would fail, 0 otherwise (warnings do not fail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli_catalog import CatalogOpt, JsonOpt

if TYPE_CHECKING:
    from imgpipe.doctor import Report

_LABEL = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def doctor(
    specs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="SPEC",
            help="Specs to check the host for (their libvirt URIs, bootstrap, AWS credentials); "
            "default: a local bootstrapped build on the default URI.",
        ),
    ] = None,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check this host for everything a bake needs and say what to fix, one line each:
    libvirtd, /dev/kvm, KVM or TCG, qemu, mmdebstrap, free disk, Ansible, the catalog, and
    AWS credentials when a spec needs them. Exit 1 when a bake would fail."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.doctor import run_doctor

        report = run_doctor(specs or [], catalog_url)
    except Exception as exc:  # noqa: BLE001 - run_doctor turns broken checks into lines already
        _abort(exc)
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(render(report))
    if not report.ok:
        raise typer.Exit(1)


def render(report: Report) -> str:
    """`ok   libvirtd     qemu:///system, libvirt 9.0.0`, `FAIL qemu-img ... -> fix: ...`."""
    width = max((len(c.name) for c in report.checks), default=0)
    lines = []
    for check in report.checks:
        fix = f" -> fix: {check.fix}" if check.fix and check.status != "ok" else ""
        lines.append(f"{_LABEL[check.status.value]:<4} {check.name:<{width}}  {check.detail}{fix}")
    fails = sum(c.status == "fail" for c in report.checks)
    warns = sum(c.status == "warn" for c in report.checks)
    if fails:
        lines.append(f"{fails} problem(s) would make a bake fail; {warns} warning(s)")
    else:
        lines.append(f"ready to bake; {warns} warning(s)")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
