"""Where a build starts: a cached bootstrap base, a local image, or a verified download.
Every source resolves to a read-only base disk that the build overlays, never modifies.
A bootstrap base is the recipe's current generation (sources.generations); nightly
rebuilds stale ones as new generations (sources.freshness)."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.errors import BuildError, SpecError, run_command

if TYPE_CHECKING:
    from imgpipe.events import Emitter
    from imgpipe.journal import Resources
    from imgpipe.spec.load import LoadedSpec


@dataclass(frozen=True)
class ResolvedSource:
    path: Path
    format: str
    record: dict[str, Any]  # what the manifest says about the source


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Serialize builders of one cache entry across threads and processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def image_format(path: Path) -> str:
    info = json.loads(run_command(["qemu-img", "info", "--output=json", str(path)]))
    fmt = str(info.get("format"))
    if fmt not in ("qcow2", "raw"):
        raise BuildError(f"{path}: unsupported image format {fmt!r} (qcow2 or raw)")
    return fmt


def resolve_source(
    loaded: LoadedSpec,
    emit: Emitter,
    cancel: threading.Event | None = None,
    *,
    resources: Resources | None = None,
    target: str | None = None,
) -> ResolvedSource:
    """The image a build starts from. `cancel` (Ctrl-C, SIGTERM) ends a download or a
    bootstrap within moments. With `resources`, a bootstrap base is held (a shared lock,
    taken while it is still the current one) until they unwind, so removing old bases
    never takes one a build's overlay is backed by. `target`: whose parent image (a spec
    with `source.parent`, resolved by lineage.with_parents) to start from."""
    source = loaded.spec.source
    parent = loaded.parents.get(target) if target is not None else None
    if parent is not None and parent.path is not None:  # lineage: the parent build's file
        path = Path(parent.path)
        if not path.is_file():
            raise BuildError(f"{parent.ref}: the image file {path} of build {parent.build_id} is gone")
        return ResolvedSource(path, image_format(path), {"kind": "image", "path": str(path)})
    if source.parent is not None:
        raise BuildError(f"source.parent {source.parent} was not resolved for target {target}")
    if source.image is not None and source.image.path is not None:
        path = (loaded.directory / source.image.path).resolve()
        if not path.is_file():
            pos = loaded.doc.position(("source", "image", "path"))
            raise SpecError(f"{pos}: source.image.path: no such file {path}")
        return ResolvedSource(path, image_format(path), {"kind": "image", "path": str(path)})
    if source.image is not None:
        from imgpipe.sources.download import fetch_verified

        assert source.image.url and source.image.checksum
        path = fetch_verified(source.image.url, source.image.checksum, emit, cancel)
        return ResolvedSource(
            path,
            image_format(path),
            {"kind": "url", "url": source.image.url, "checksum": source.image.checksum},
        )
    return _bootstrap(loaded, emit, cancel, resources)


def _bootstrap(
    loaded: LoadedSpec, emit: Emitter, cancel: threading.Event | None, resources: Resources | None
) -> ResolvedSource:
    from imgpipe.sources.bootstrap import build_base_image, recipe_key
    from imgpipe.sources.generations import hold_base, recipe_lock
    from imgpipe.sources.identity import bootstrap_recipe, cached_base_path

    recipe = bootstrap_recipe(loaded)  # the one recipe the fingerprint names too
    key = recipe_key(recipe)
    record: dict[str, Any] = {
        "kind": "bootstrap",
        "distro": recipe.distro,
        "suite": recipe.suite,
        "packages": list(recipe.extra_packages),
        "keep": list(recipe.keep),
        "key": key,
    }
    with recipe_lock(recipe, key):
        base = cached_base_path(recipe, key)  # again: nightly may have made a new one meanwhile
        cached = base.is_file()
        if cached:
            emit.message(f"reusing cached base {base.name}")
        else:
            emit.message(f"bootstrapping {recipe.distro} {recipe.suite} (first time; about a minute)")
            workdir = base.parent / f".work-{key[:16]}-{os.getpid()}"
            try:
                build_base_image(recipe, base, workdir, emit.message, cancel)
            finally:
                from imgpipe.sources.bootstrap import remove_unmounted

                remove_unmounted(workdir)
        if resources is not None:
            hold_base(base, resources)
    return ResolvedSource(base, "qcow2", {**record, "base": base.name, "cached": cached})
