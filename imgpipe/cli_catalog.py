"""The catalog's commands: `status`, `builds`, `show`. Parse, ask imgpipe.history or the
catalog, render: tables for a terminal, stable JSON (`{"v": 1, ...}`) for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from imgpipe.catalog import BuildView, Catalog

CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="Catalog database URL (default: IMGPIPE_CATALOG, else SQLite in imgpipe's state dir).",
        envvar=None,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def open_catalog_for(url: str | None) -> Catalog:
    """The catalog, with running builds whose process is gone marked abandoned."""
    from imgpipe.catalog import open_catalog

    catalog = open_catalog(url)
    catalog.reap_abandoned()
    return catalog


def status(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The image spec (YAML).")],
    var: Annotated[list[str] | None, typer.Option("--var", help="NAME=VALUE; highest precedence.")] = None,
    var_file: Annotated[list[Path] | None, typer.Option("--var-file", help="Variables file.")] = None,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Is each target up to date with a good build, or what changed since its last one."""
    from imgpipe.cli import _abort, _load

    try:
        from imgpipe.history import target_status

        loaded, _ = _load(spec, var_file, var)
        with open_catalog_for(catalog_url) as catalog:
            key = catalog.hmac_key()
            statuses = [target_status(catalog, loaded, t, key) for t in loaded.spec.targets]
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        doc = {"v": 1, "spec": loaded.spec.name, "targets": [s.to_json() for s in statuses]}
        typer.echo(json.dumps(doc, indent=2))
        return
    for s in statuses:
        if s.up_to_date:
            typer.echo(f"{s.target}: up to date with build {s.build_id}")
        else:
            since = f" since build {s.build_id}" if s.build_id else ""
            typer.echo(f"{s.target}: changed{since}:")
            for change in s.changes:
                typer.echo(f"  {change}")
        for include in s.dynamic_includes:
            typer.echo(f"  note: a templated include ({include}) is not in the fingerprint")


def _build_json(build: BuildView) -> dict[str, Any]:
    return {
        "id": build.id,
        "spec": build.spec_name,
        "spec_path": build.spec_path,
        "status": build.status.value,
        "started_at": build.started_at.isoformat(),
        "finished_at": build.finished_at.isoformat() if build.finished_at else None,
        "imgpipe": build.imgpipe_version,
        "ansible_core": build.ansible_core,
        "revoked": _revoked_json(build),
        "deprecated_at": build.deprecated_at.isoformat() if build.deprecated_at else None,
        "targets": {
            t.target: {
                "status": t.status.value,
                "artifact_id": t.artifact_id,
                "fingerprint": t.fingerprint,
                "publish_fingerprint": t.publish_fingerprint,
            }
            for t in build.targets
        },
    }


def revoked_text(build: BuildView) -> str:
    """`revoked (reason, by, when)`, or "" for a build that is not revoked."""
    if build.revoked_at is None:
        return ""
    when = f"{build.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    return f"revoked ({build.revoked_reason}, by {build.revoked_by}, {when})"


def _revoked_json(build: BuildView) -> dict[str, Any] | None:
    if build.revoked_at is None:
        return None
    return {"reason": build.revoked_reason, "by": build.revoked_by, "at": build.revoked_at.isoformat()}


def builds(
    name: Annotated[str | None, typer.Argument(help="Only this spec's builds.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 50,
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List builds, newest first: status, targets, artifacts, fingerprint, age."""
    from imgpipe.cli import _abort

    try:
        with open_catalog_for(catalog_url) as catalog:
            found = catalog.builds(name, limit)
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        typer.echo(json.dumps({"v": 1, "builds": [_build_json(b) for b in found]}, indent=2))
        return
    from imgpipe.history import age

    rows: list[Any] = [("BUILD", "SPEC", "STATUS", "TARGET", "ARTIFACT", "FINGERPRINT", "AGE")]
    for b in found:
        for i, t in enumerate(b.targets or ()):
            first = i == 0
            rows.append(
                (
                    b.id if first else "",
                    b.spec_name if first else "",
                    t.status.value,
                    t.target,
                    t.artifact_id or "-",
                    (t.fingerprint or "-")[:12],
                    age(b.started_at.timestamp()) if first else "",
                )
            )
        if b.revoked_at is not None:
            rows.append(f"  {revoked_text(b)}")  # under its rows, outside the columns
    if len(rows) == 1:
        typer.echo("no builds in the catalog" + (f" for {name}" if name else ""))
        return
    widths = [max(len(r[i]) for r in rows if isinstance(r, tuple)) for i in range(len(rows[0]))]
    for row in rows:
        if isinstance(row, str):
            typer.echo(row)
            continue
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def show(
    build: Annotated[str, typer.Argument(metavar="BUILD", help="A build id (or a unique prefix of one).")],
    catalog_url: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One build with its inputs and artifacts."""
    from imgpipe.cli import _abort
    from imgpipe.errors import SpecError

    try:
        with open_catalog_for(catalog_url) as catalog:
            found = catalog.get(build)
            if found is None:
                raise SpecError(f"no build {build!r} in the catalog {catalog.url_masked}")
            from imgpipe.lineage import chain

            chains = {t.target: chain(catalog, t) for t in found.targets}  # what each is built on
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    if json_out:
        doc = _build_json(found)
        for t in found.targets:
            doc["targets"][t.target].update(
                inputs=t.fingerprint_parts,
                record=t.record,
                artifacts=[a.__dict__ for a in t.artifacts],
                parents=chains[t.target],
            )
        typer.echo(json.dumps({"v": 1, "build": doc}, indent=2, default=str))
        return
    typer.echo(f"build {found.id}  {found.status.value}")
    if found.revoked_at is not None:
        typer.echo(f"  {revoked_text(found)}")
    typer.echo(f"  spec     {found.spec_name} ({found.spec_path})")
    typer.echo(
        f"  started  {found.started_at:%Y-%m-%d %H:%M:%S} UTC on {found.owner_host} (by {found.trigger})"
    )
    typer.echo(f"  versions imgpipe {found.imgpipe_version}, ansible-core {found.ansible_core}")
    for t in found.targets:
        typer.echo(f"  target {t.target}: {t.status.value}")
        typer.echo(f"    artifact    {t.artifact_id or '-'}")
        for a in t.artifacts:
            where = f" ({a.region})" if a.region else f" on host {a.host}" if a.host else ""
            typer.echo(f"      {a.kind} {a.ref}{where}")
        typer.echo(f"    fingerprint {t.fingerprint or '-'}")
        parts = t.fingerprint_parts
        for role, files in sorted((parts.get("roles") or {}).items()):
            typer.echo(f"    role {role}: {len(files or {})} file(s)")
        source = parts.get("source") or {}
        if source:
            typer.echo(
                f"    source      {source.get('kind')}: "
                + ", ".join(f"{k}={str(v)[:19]}" for k, v in source.items() if k != "kind")
            )
        for depth, link in enumerate(chains[t.target]):
            label = "parent" if depth == 0 else "  " * depth + "its parent"
            state = "" if link["status"] == "succeeded" else f" ({link['status']})"
            typer.echo(
                f"    {label:<11} {link['ref']} = build {link['build_id']} target {link['target']}{state}"
            )
        if t.record.get("error"):
            typer.echo(f"    error       {t.record['error'].splitlines()[0]}")


_BUILD_HELP = "A build id (from the catalog), a build's output directory, or its manifest.json."


def diff(
    a: Annotated[str, typer.Argument(metavar="A", help=_BUILD_HELP)],
    b: Annotated[str, typer.Argument(metavar="B", help=_BUILD_HELP)],
    catalog_url: CatalogOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
) -> None:
    """Show what changed from build A to build B: packages added, removed, upgraded or
    downgraded per target (from their SBOMs), and the inputs that differ (imgpipe and
    ansible-core versions, roles, sources, spec path). Exits 0 whether or not they differ;
    2 if A or B is not a build with SBOMs."""
    from imgpipe.cli import _abort

    try:
        from imgpipe.diff import diff_builds, load_build, render_text

        result = diff_builds(load_build(_build_dir(a, catalog_url)), load_build(_build_dir(b, catalog_url)))
    except Exception as exc:  # noqa: BLE001
        _abort(exc)
    typer.echo(json.dumps(result.to_json(), indent=2) if json_out else render_text(result))


def _build_dir(value: str, catalog_url: str | None) -> Path:
    """A path as given, or the output directory the catalog records for a build id."""
    if Path(value).exists():
        return Path(value)
    from imgpipe.errors import SpecError
    from imgpipe.history import file_elsewhere

    with open_catalog_for(catalog_url) as catalog:
        found = catalog.get(value)
    dirs = [t.record["output_dir"] for t in (found.targets if found else ()) if t.record.get("output_dir")]
    elsewhere = next(filter(None, (file_elsewhere(t) for t in (found.targets if found else ()))), None)
    if found is not None and elsewhere and not any(Path(d).exists() for d in dirs):
        raise SpecError(
            f"build {found.id} was made on host {elsewhere}: its files (images, SBOMs) are there, "
            "not on this host",
            hint=f"run this command on {elsewhere}, or copy its output directory {dirs[0]} here",
        )
    return Path(dirs[0]) if dirs else Path(value)


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(builds)
    app.command()(show)
    app.command()(diff)
