"""`imgpipe prune`: remove the old builds a spec's `retention` policy lets go. Parse, ask
imgpipe.retention, render: the plan (what goes, what stays and why) as text or stable
JSON (`{"v": 1, ...}`); progress on stderr."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli_catalog import CatalogOpt, JsonOpt

if TYPE_CHECKING:
    from imgpipe.retention.plan import BuildPlan, PruneReport


def prune(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="A spec's name; default: every spec with a retention policy."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing anywhere: print what a real run would remove.")
    ] = False,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove the builds a spec's `retention` policy lets go: their AMIs in every region
    (and snapshots no other AMI uses), their files, their channel history. Never a build a
    channel points at, the newest good build of a target, a parent of a kept build, an AMI
    in use in EC2 or tagged imgpipe:keep=true. Exit 1 if something could not be removed."""
    from imgpipe.cli import _abort

    def progress(line: str) -> None:
        typer.echo(line, err=True)

    try:
        from imgpipe.catalog import open_catalog
        from imgpipe.cli_catalog import open_catalog_for
        from imgpipe.retention import prune as run_prune

        # a dry run writes nothing, not even the reaping of abandoned builds
        with open_catalog(catalog_url) if dry_run else open_catalog_for(catalog_url) as catalog:
            if name is not None and catalog.spec_state(name) is None:
                from imgpipe.errors import SpecError

                raise SpecError(
                    f"spec {name!r} is not in the catalog {catalog.url_masked}",
                    hint="`imgpipe builds` lists the specs the catalog knows",
                )
            report = run_prune(catalog, [name] if name else None, dry_run=dry_run, log=progress)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(render(report))
    if report.failures:
        raise typer.Exit(1)


def render(report: PruneReport) -> str:
    """The plan, one build a line with its steps and notes under it; then what failed."""
    would = "would " if report.dry_run else ""
    lines: list[str] = []
    for build in report.resumed:
        lines.append(f"{would}finish the interrupted prune of {build.build_id}:")
        lines += [f"  {_step(s)}" for s in build.steps]
    for plan in report.specs:
        policy = ", ".join(f"{k} {v}" for k, v in plan.retention.items() if v is not None)
        lines.append(f"{plan.spec} (retention: {policy}):")
        lines += _build_lines(plan.builds, would)
    for spec, why in report.skipped.items():
        lines.append(f"{spec}: skipped: {why}")
    if report.dry_run:
        count = len(report.removed()) + len(report.resumed)
        summary = f"would remove {count} build{'s' if count != 1 else ''}"
    else:
        summary = f"pruned {len(report.pruned)} build{'s' if len(report.pruned) != 1 else ''}"
    lines += [f"error: {f}" for f in report.failures]
    if report.failures:
        summary += f"; {len(report.failures)} could not be done (the next prune tries again)"
    lines.append(summary)
    return "\n".join(lines)


def _build_lines(builds: list[BuildPlan], would: str) -> list[str]:
    lines = []
    for b in builds:
        verb = b.action.value if b.action.value == "keep" else f"{would}{b.action.value}"
        head = f"  {verb} {b.build_id} ({b.status}, started {b.started_at}): {'; '.join(b.reasons)}"
        lines.append(head)
        lines += [f"      {_step(s)}" for s in b.steps]
        lines += [f"      note: {n}" for n in b.notes]
    return lines


def _step(step: dict[str, object]) -> str:
    from imgpipe.retention.plan import describe

    return describe(step)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.command()(prune)
