"""The channel commands: `promote` points a channel at a build, `channels` lists a spec's
channels with their history. Parse, ask imgpipe.channels, render: text for a terminal,
stable JSON (`{"v": 1, ...}`) for scripts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgpipe.cli_catalog import CatalogOpt, JsonOpt, open_catalog_for

if TYPE_CHECKING:
    from imgpipe.catalog.views import ChannelMoveView, ChannelView


def promote(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The spec's name.")],
    build: Annotated[str, typer.Argument(metavar="BUILD", help="A build id (or a unique prefix of one).")],
    channel: Annotated[str, typer.Option("--channel", help="The channel to point at BUILD, e.g. stable.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; print where the channel would move.")
    ] = False,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Point a channel at a succeeded build everywhere it is visible (an SSM parameter per
    region of its AMIs, a symlink for its image files), or nowhere: a failure puts every
    place back. Exit 2 for an unknown or failed build, 1 when a place refused the move."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.channels import Mover

        with open_catalog_for(catalog_url) as catalog:
            result = Mover(catalog).promote(name, build, channel, dry_run=dry_run)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    for line in result.recovered:
        typer.echo(f"recovered: {line}", err=True)
    if result.unchanged:
        typer.echo(f"{result.channel}: already at {result.build_id}")
        return
    would = "would move (dry run, nothing changed): " if result.dry_run else ""
    typer.echo(f"{would}{result.channel}: {result.previous or '-'} -> {result.build_id}")
    for place in result.places:
        typer.echo(f"  {_place(place)}")


def channels(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The spec's name.")],
    history: Annotated[int, typer.Option("--history", min=0, help="How many past moves, newest first.")] = 20,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List a spec's channels, where each is visible, and their moves (with who moved them)."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.channels import Mover

        with open_catalog_for(catalog_url) as catalog:
            recovered = Mover(catalog).recover(name)
            found = catalog.channels(name)
            moves = catalog.channel_history(name, limit=history) if history else []
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        doc = {
            "v": 1,
            "spec": name,
            "recovered": recovered,
            "channels": [_channel_json(c) for c in found],
            "history": [_move_json(m) for m in moves],
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    for line in recovered:
        typer.echo(f"recovered: {line}", err=True)
    if not found:
        typer.echo(f"no channels for {name}")
    for c in found:
        moved = f"  moved {c.moved_at:%Y-%m-%d %H:%M:%S} UTC" if c.moved_at else ""
        pending = f"  (moving to {c.pending['to']})" if c.pending else ""
        typer.echo(f"{c.channel}: {c.build_id or '-'}{moved}{pending}")
        for place in c.places:
            typer.echo(f"  {_place(place)}")
    if moves:
        typer.echo("history:")
    for m in moves:
        detail = f" ({m.detail})" if m.detail else ""
        typer.echo(
            f"  {m.moved_at:%Y-%m-%d %H:%M:%S}  {m.channel}: {m.from_build or '-'} -> {m.to_build}  "
            f"{m.outcome} by {m.moved_by}{detail}"
        )


def _place(place: dict[str, Any]) -> str:
    was = ""
    if "before" in place:  # a dry run: what it holds now
        before = place["before"]
        was = f"  (now {before.get('Value') if isinstance(before, dict) else before or 'absent'})"
    if place["kind"] == "link":
        return f"{place['path']} -> {place['after']}{was}"
    return f"{place['name']} = {place['after']} in {place['region']}{was}"


def _channel_json(c: ChannelView) -> dict[str, Any]:
    return {
        "channel": c.channel,
        "build_id": c.build_id,
        "moved_at": c.moved_at.isoformat() if c.moved_at else None,
        "places": list(c.places),
        "moving_to": c.pending["to"] if c.pending else None,
    }


def _move_json(m: ChannelMoveView) -> dict[str, Any]:
    return {
        "channel": m.channel,
        "from": m.from_build,
        "to": m.to_build,
        "outcome": m.outcome,
        "by": m.moved_by,
        "at": m.moved_at.isoformat(),
        "detail": m.detail,
    }
