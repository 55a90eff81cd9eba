"""`imgpipe revoke BUILD --reason TEXT`: parse, ask imgpipe.revoke, render: text for a
terminal, stable JSON (`{"v": 1, ...}`) for scripts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli_catalog import CatalogOpt, JsonOpt, open_catalog_for

if TYPE_CHECKING:
    from imgpipe.revoke import RevokeResult


def revoke(
    build: Annotated[str, typer.Argument(metavar="BUILD", help="A build id (or a unique prefix of one).")],
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (required): kept in the catalog and tagged on its AMIs."),
    ] = None,
    descendants: Annotated[
        bool, typer.Option("--descendants", help="Revoke every build made from it too, recursively.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; print what would be done.")
    ] = False,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a build: it can no longer be a parent or a channel's target; every channel
    pointing at it rolls back to the previous good build (SSM parameters and symlinks);
    its AMIs are tagged imgpipe:revoked and deprecated; a REVOKED note goes beside its image
    files. Exit 2 for bad input, 1 when something could not be done (a channel with no good
    build to roll back to stays where it is), 0 otherwise."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.revoke import revoke as run

        with open_catalog_for(catalog_url) as catalog:
            result = run(catalog, build, reason, descendants=descendants, dry_run=dry_run)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _render(result)
    if not result.ok and not result.dry_run:
        raise typer.Exit(1)


def _render(result: RevokeResult) -> None:
    for line in result.recovered:
        typer.echo(f"recovered: {line}", err=True)
    for note in result.plan.notes:
        typer.echo(f"note: {note}")
    prefix = "would " if result.dry_run else ""
    for o in result.outcomes:
        if result.dry_run:
            typer.echo(f"{prefix}{o.action.step.value}: {o.action.subject}: {o.detail}")
        else:
            typer.echo(f"{o.action.step.value}: {o.action.subject}: {o.status}: {o.detail}")
    if result.dry_run:
        typer.echo("dry run: nothing was changed")
        return
    for problem in result.problems:
        typer.echo(f"error: {problem}", err=True)
    if result.problems:
        typer.echo(
            f"error: build {result.plan.build_id} is revoked in the catalog, but {len(result.problems)} "
            "thing(s) above could not be done; fix the cause and run the revoke again",
            err=True,
        )
