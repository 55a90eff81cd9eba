"""What a build starts from, named so that it means the same on every host: never a local
path or file name. Cheap: it never bootstraps, downloads or launches anything.

- bootstrap: the recipe key, and the identity of the recipe's current cached base (its
  newest generation: sources.generations). A base's own bytes differ between hosts
  (mmdebstrap pulls whatever the mirror has that day, the root filesystem UUID is random),
  so when the base has a sidecar `<base>.json` that says what it was built from
  (`{"recipe": key, "built": iso-date, "built_at": ..., "built_from": {...},
  "apt_sources": [...]}`: the package versions installed and the Release date of each
  suite its apt lists came from), the identity is a digest of that. The Release dates count
  because the base keeps its apt lists: a base rebuilt with newer lists installs newer
  packages in every bake on it, even when its own packages did not change. The URIs do not
  count (mirrors differ between hosts, their content does not). Without a sidecar (bases of
  old imgpipe versions), it is the base file's sha256: host-specific, so two hosts with their
  own bases see a change where there may be none, which costs a rebuild and never a stale
  image. No cached base yet: None (the bake will make one; record the fingerprint after the
  source is resolved).
- image: the file's sha256 (cached by filedigest; where the file lives does not count).
- url: the checksum the spec pins (the URL is only where to fetch it).
- ami: the AMI id: as given, or what the filter resolves to now.
- parent: the parent build's id and target (lineage), never the channel that named it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.errors import SpecError
from imgpipe.filedigest import file_sha256

if TYPE_CHECKING:
    from imgpipe.sources.bootstrap import BootstrapRecipe
    from imgpipe.spec.load import LoadedSpec


@dataclass(frozen=True)
class SourceIdentity:
    kind: str  # "bootstrap" | "image" | "url" | "ami"
    identity: dict[str, Any]  # JSON-able, host-independent
    built: str | None = None  # when the cached base was made (for messages only; not part of the identity)


def bootstrap_recipe(loaded: LoadedSpec) -> BootstrapRecipe:
    """The recipe of the spec's bootstrap source (defaults when the spec names no source)."""
    from imgpipe.sources.bootstrap import BootstrapRecipe
    from imgpipe.spec.model import Bootstrap

    wanted = loaded.spec.source.bootstrap or Bootstrap()
    return BootstrapRecipe(
        distro=wanted.distro,
        suite=wanted.suite,
        extra_packages=tuple(wanted.packages),
        disk_size_gb=wanted.disk_gb,
        keep=tuple(wanted.keep),
    )


def cached_base_path(recipe: BootstrapRecipe, key: str) -> Path:
    """The recipe's current cached base (its newest generation), or where its first base
    goes when there is none yet."""
    from imgpipe.sources.generations import current_base, first_path

    return current_base(recipe, key) or first_path(recipe, key)


def _releases(apt_sources: Any) -> list[list[str]]:
    """[suite, Release date] of each suite a base's lists came from, without the URIs."""
    if not isinstance(apt_sources, list):
        return []
    pairs = {
        (str(entry.get("suite")), str(entry.get("date")))
        for entry in apt_sources
        if isinstance(entry, dict) and entry.get("date")
    }
    return [list(pair) for pair in sorted(pairs)]


def base_identity(base: Path, key: str) -> tuple[str | None, str | None]:
    """(identity, built date) of a cached base; (None, None) when there is none."""
    if not base.is_file():
        return None, None
    from imgpipe.fingerprint import canonical_digest

    try:
        sidecar = json.loads(base.with_suffix(".json").read_text())
    except (OSError, ValueError):
        sidecar = None
    if isinstance(sidecar, dict) and sidecar.get("recipe") == key and sidecar.get("built_from"):
        built, made_of = sidecar.get("built"), sidecar["built_from"]
        if isinstance(made_of, dict) and (releases := _releases(sidecar.get("apt_sources"))):
            made_of = {**made_of, "releases": releases}
        return "built-from:" + canonical_digest(made_of), str(built) if built else None
    built = datetime.fromtimestamp(base.stat().st_mtime, UTC).date().isoformat()
    return "sha256:" + file_sha256(base), built


def _bootstrap(loaded: LoadedSpec) -> SourceIdentity:
    from imgpipe.sources.bootstrap import recipe_key

    recipe = bootstrap_recipe(loaded)
    key = recipe_key(recipe)
    base, built = base_identity(cached_base_path(recipe, key), key)
    return SourceIdentity("bootstrap", {"recipe": key, "base": base}, built)


def _ami(settings: Any, resolve_ami: Callable[[Any], str] | None) -> SourceIdentity:
    if getattr(settings, "source_ami", None):
        return SourceIdentity("ami", {"image_id": settings.source_ami, "via": "id"})
    if resolve_ami is None:
        raise ValueError("source_identity: a source_ami_filter needs resolve_ami")
    return SourceIdentity("ami", {"image_id": resolve_ami(settings), "via": "filter"})


def source_identity(
    loaded: LoadedSpec, target: str, *, resolve_ami: Callable[[Any], str] | None = None
) -> SourceIdentity:
    """The identity of what `target` starts from. A target whose builder settings name a
    source AMI (source_ami or source_ami_filter) starts from that; the others from the
    spec's source. `resolve_ami(settings)` returns the id a filter matches now (it may
    raise, e.g. SpecError when nothing matches)."""
    settings = loaded.targets[target]
    if loaded.spec.source.parent is not None:
        parent = loaded.parents.get(target)
        if parent is None:
            raise ValueError("source_identity: resolve the spec's parent first (lineage.with_parents)")
        return SourceIdentity("parent", parent.identity())
    if hasattr(settings, "source_ami") or hasattr(settings, "source_ami_filter"):
        return _ami(settings, resolve_ami)
    image = loaded.spec.source.image
    if image is not None and image.path is not None:
        path = (loaded.directory / image.path).resolve()
        if not path.is_file():
            pos = loaded.doc.position(("source", "image", "path"))
            raise SpecError(f"{pos}: source.image.path: no such file {path}")
        return SourceIdentity("image", {"sha256": file_sha256(path)})
    if image is not None:
        return SourceIdentity("url", {"checksum": str(image.checksum).lower()})
    return _bootstrap(loaded)
