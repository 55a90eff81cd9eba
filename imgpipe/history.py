"""The catalog's view of bakes: a bake records itself as it goes (BakeRecorder), and the
catalog answers whether each target is up to date or what changed since its last good
build (target_status). The fingerprint of a target is computed the same way for both."""

from __future__ import annotations

import configparser
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe import __version__

if TYPE_CHECKING:
    from imgpipe.catalog import Catalog, TargetBuildView
    from imgpipe.fingerprint import Fingerprint
    from imgpipe.manifest import TargetRecord
    from imgpipe.spec.load import LoadedSpec


def spec_origin(path: Path) -> str:
    """Where a spec lives, the same on every runner that checks out its repository: the
    repository's remote and the spec's path in it; outside a repository, host and path."""
    path = path.resolve()
    for repo in path.parents:
        git = repo / ".git"
        if git.is_dir():
            config = configparser.ConfigParser(strict=False)
            config.read(git / "config")
            remote = _without_credentials(config.get('remote "origin"', "url", fallback=""))
            return f"git {remote or f'{socket.gethostname()}:{repo}'} {path.relative_to(repo)}"
    return f"{socket.gethostname()}:{path}"


def _without_credentials(url: str) -> str:
    """A remote URL may carry a token (https://user:token@host/...): never into the catalog."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def _resolver(ami_id: str | None) -> Callable[[Any], str]:
    """How a target's source AMI resolves: to what the build used, or (None) to what the
    filter matches now."""
    if ami_id is not None:
        return lambda _settings: ami_id
    from imgpipe.builders.aws import resolve_source_ami

    return resolve_source_ami  # type: ignore[return-value]


def fingerprint_of(
    loaded: LoadedSpec, target: str, hmac_key: bytes, ami_id: str | None = None
) -> Fingerprint:
    from imgpipe.fingerprint import target_fingerprint
    from imgpipe.sources.identity import source_identity

    source = source_identity(loaded, target, resolve_ami=_resolver(ami_id))
    return target_fingerprint(loaded, target, hmac_key=hmac_key, source=source)


class BakeRecorder:
    """Records one bake in the catalog: each state change is one transaction, so a bake
    killed at any point leaves a `running` row that the next command reaps."""

    def __init__(
        self,
        catalog: Catalog,
        loaded: LoadedSpec,
        trigger: str = "bake",
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.catalog, self.loaded, self.trigger = catalog, loaded, trigger
        self.warn = warn or _warn_on_stderr  # a warning must not fail a build that happened
        self.key = catalog.hmac_key()
        self.build_id = ""
        self.out: Path | None = None
        self.fingerprints: dict[str, Fingerprint] = {}

    def started(self, build_id: str, out: Path, targets: list[str]) -> None:
        from ansible.release import __version__ as ansible_version

        self.build_id, self.out = build_id, out
        # the inputs as the bake starts: an edit during the bake must not pass for what was baked
        for target in targets:
            settings = self.loaded.targets[target]
            if not (hasattr(settings, "source_ami") or hasattr(settings, "source_ami_filter")):
                self.fingerprints[target] = fingerprint_of(self.loaded, target, self.key)
        self.catalog.start_build(
            build_id,
            self.loaded.spec.name,
            str(self.loaded.path),
            targets,
            imgpipe_version=__version__,
            ansible_core=ansible_version,
            trigger=self.trigger,
            parents={t: p.catalog_entry() for t, p in self.loaded.parents.items() if t in targets},
        )

    def target_finished(self, record: TargetRecord, interrupted: bool) -> None:
        from imgpipe.fingerprint import publish_fingerprint

        status = "succeeded" if record.ok else "interrupted" if interrupted else "failed"
        fingerprint = None
        if record.ok:  # what a later bake compares with; a failed build is never up to date
            fingerprint = self.fingerprints.get(record.target)
            source = (fingerprint.parts.get("source") or {}) if fingerprint else {}
            if fingerprint is None or (source.get("kind") == "bootstrap" and source.get("base") is None):
                # an AMI as the build resolved it; a base this bake made first
                ami = record.source.get("image_id") if record.source.get("kind") == "ami" else None
                fingerprint = fingerprint_of(self.loaded, record.target, self.key, ami)
        self.catalog.finish_target(
            self.build_id,
            record.target,
            status=status,
            fingerprint=fingerprint.digest if fingerprint else None,
            fingerprint_parts=fingerprint.parts if fingerprint else {},
            publish_fingerprint=publish_fingerprint(self.loaded, record.target),
            record={
                **catalog_record(record, self.out),
                "channels": self.loaded.spec.channels.model_dump(mode="json"),  # where promote shows it
            },
        )

    def finished(self, status: str) -> None:
        self.catalog.finish_build(self.build_id, status)
        if status != "succeeded":
            return
        from imgpipe.channels import LATEST, move_latest

        try:
            move_latest(self.catalog, self.build_id)
        except Exception as exc:  # noqa: BLE001 - the build is recorded; only its channel lags
            self.warn(
                f"build {self.build_id} succeeded, but channel {LATEST} could not be moved to it: {exc}; "
                f"run `imgpipe promote {self.loaded.spec.name} {self.build_id} --channel {LATEST}`"
            )


def _warn_on_stderr(text: str) -> None:
    import sys

    print(f"warning: {text}", file=sys.stderr)


def catalog_record(record: TargetRecord, out: Path | None) -> dict[str, Any]:
    """The target's manifest record, as the catalog keeps it (plain JSON)."""
    data = asdict(record)
    data["published"] = [
        {
            "publisher": p.publisher,
            "publisher_type": p.publisher_type,
            "artifact_id": p.artifact_id,
            "data": p.data,
        }
        for p in record.published
    ]
    data["output_dir"] = str(out) if out else None
    return data


@dataclass
class TargetStatus:
    target: str
    up_to_date: bool
    build_id: str | None  # the good build it is up to date with, or the last good one
    changes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    dynamic_includes: list[str] = field(default_factory=list)  # what the fingerprint can't see into
    republish: bool = False  # only publish settings changed: publish the good build's artifact again

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_elsewhere(good: TargetBuildView) -> str | None:
    """The host a build's image file lives on, when that is not this host (a catalog shared
    by several build hosts): what needs the file must run there. None: here, or no file."""
    from imgpipe.core.artifact import IMAGE_FILE

    here = socket.gethostname()
    return next((a.host for a in good.artifacts if a.kind == IMAGE_FILE and a.host and a.host != here), None)


def artifacts_gone(good: TargetBuildView, profile: str | None = None) -> list[str]:
    """What of a good build's artifacts no longer exists (a file moved or deleted, an AMI
    deregistered): such a build can't be up to date. An image file on another host is
    taken to be there: only that host can look."""
    record = good.record
    out = Path(record.get("output_dir") or ".")
    files = [] if file_elsewhere(good) else record.get("files", [])
    gone = [f"image file {out / f['name']} is gone" for f in files if not (out / f["name"]).exists()]
    images = record.get("data", {}).get("images", [])
    if images:
        from imgpipe.aws.images import missing_images

        missing = missing_images(images, profile)
        gone += [f"AMI {i['image_id']} in {i['region']} is gone" for i in images if i["image_id"] in missing]
    return gone


def target_status(catalog: Catalog, loaded: LoadedSpec, target: str, hmac_key: bytes) -> TargetStatus:
    """Up to date with a succeeded build of the same fingerprint whose artifacts exist, or
    exactly what changed since the last good build."""
    from imgpipe.fingerprint import publish_fingerprint
    from imgpipe.fingerprint_changes import explain
    from imgpipe.lineage import with_parents

    loaded = with_parents(catalog, loaded)  # a child of a moved parent channel has changed
    current = fingerprint_of(loaded, target, hmac_key)
    publishing = publish_fingerprint(loaded, target)
    profile = getattr(getattr(loaded.targets[target], "aws", None), "profile", None)
    dynamic = list(current.parts.get("dynamic_includes") or [])
    same = catalog.find_good(loaded.spec.name, target, current.digest)
    if same is not None:
        gone = artifacts_gone(same, profile)
        if not gone and same.publish_fingerprint == publishing:
            return TargetStatus(target, True, same.build_id, [], current.digest, dynamic)
        if not gone:
            changes = ["publish settings changed (the publishers run again on this build's artifact)"]
            return TargetStatus(
                target, False, same.build_id, changes, current.digest, dynamic, republish=True
            )
    last = catalog.last_good(loaded.spec.name, target)
    if last is None:
        return TargetStatus(target, False, None, ["never built successfully"], current.digest, dynamic)
    sensitive = {name for name, var in loaded.variables.items() if var.sensitive}
    changes = explain(last.fingerprint_parts, current.parts, sensitive=sensitive)
    if not changes:
        changes = artifacts_gone(last, profile) or ["its last good build has no fingerprint"]
    return TargetStatus(target, False, last.build_id, changes, current.digest, dynamic)


def age(started: float) -> str:
    seconds = max(0, int(time.time() - started))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
