"""Images built on images: a spec's `source: {parent: NAME@CHANNEL}` (or `NAME@BUILD`,
`NAME/TARGET@CHANNEL`) resolved through the catalog to plain values a builder already
understands: for a target that starts from an image file (libvirt), the parent's local
file and its recorded sha256; for a target that starts from an AMI (aws), the parent's AMI
in that target's region, given to it as its `source_ami`. Builders never see the catalog.

The parent must be usable (succeeded, not revoked, not pruned); its artifact must exist
where this build needs it. Every refusal names the parent build and why."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.errors import SpecError

if TYPE_CHECKING:
    from imgpipe.catalog import BuildView, Catalog, TargetBuildView
    from imgpipe.spec.load import LoadedSpec

_SPEC_NAME = r"[a-z0-9][a-z0-9._-]{0,62}"
_TARGET_NAME = r"[A-Za-z0-9_-]+"
_REF = re.compile(rf"^(?P<spec>{_SPEC_NAME})(?:/(?P<target>{_TARGET_NAME}))?@(?P<at>[^@/]+)$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")  # channels.CHANNEL_NAME
_BUILD = re.compile(r"^[0-9][0-9A-Za-z-]{0,63}$")  # a build id (20261127T053122Z-dc0ed0) or a prefix
IMAGE = "image"  # what a target starts from: an image file ...
AMI = "ami"  # ... or an AMI


@dataclass(frozen=True)
class ParentRef:
    """A parsed `source.parent`: exactly one of channel and build."""

    spec: str
    target: str | None = None
    channel: str | None = None
    build: str | None = None

    def __str__(self) -> str:
        where = f"{self.spec}/{self.target}" if self.target else self.spec
        return f"{where}@{self.channel or self.build}"


def parse_parent_ref(text: str) -> ParentRef:
    """`NAME@CHANNEL`, `NAME@BUILD` or `NAME/TARGET@...`; ValueError saying what is wrong."""
    match = _REF.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a parent reference: expected NAME@CHANNEL, NAME@BUILD or NAME/TARGET@CHANNEL "
            "(e.g. base@stable)"
        )
    spec, target, at = match["spec"], match["target"], match["at"]
    if _CHANNEL.match(at):
        return ParentRef(spec, target, channel=at)
    if _BUILD.match(at):
        return ParentRef(spec, target, build=at)
    raise ValueError(
        f"{text!r}: {at!r} is neither a channel name (lower-case, starting with a letter) nor a build id"
    )


@dataclass(frozen=True)
class ResolvedParent:
    """The image one target starts from: plain values, no catalog."""

    ref: str  # as the spec says it: base@stable
    spec: str
    build_id: str
    target: str  # the parent's target
    kind: str  # IMAGE or AMI
    path: str | None = None  # IMAGE: the parent's file on this host
    sha256: str | None = None  # IMAGE: as the catalog recorded it (not hashed again)
    size: int | None = None
    image_id: str | None = None  # AMI: in `region`
    region: str | None = None

    def identity(self) -> dict[str, Any]:
        """What the child's fingerprint holds: the parent build and target, never the channel."""
        return {"build_id": self.build_id, "target": self.target}

    def catalog_entry(self) -> tuple[str, str, str]:
        """(build id, target, reference) for Catalog.start_build(parents=...)."""
        return (self.build_id, self.target, self.ref)

    def record(self) -> dict[str, Any]:
        """What the manifest's `source` says about the parent."""
        found = {"sha256": self.sha256} if self.kind == IMAGE else {"image_id": self.image_id}
        return {"ref": self.ref, "build_id": self.build_id, "target": self.target, **found}


def needs(settings: Any) -> str:
    """What a target's builder starts from: an AMI (it has a source AMI setting) or an image file."""
    return AMI if hasattr(settings, "source_ami") else IMAGE


def parent_ref(loaded: LoadedSpec) -> ParentRef | None:
    text = loaded.spec.source.parent
    return parse_parent_ref(text) if text else None


def _located(loaded: LoadedSpec, message: str, hint: str | None = None) -> SpecError:
    pos = loaded.doc.position(("source", "parent"))
    return SpecError(f"{pos}: source.parent: {message}", hint=hint)


def find_parent_build(catalog: Catalog, ref: ParentRef) -> BuildView:
    """The build `ref` names, which must be usable; SpecError naming it and why not."""
    if ref.channel is not None:
        channel = catalog.channel(ref.spec, ref.channel)
        if channel is None or channel.build_id is None:
            if catalog.spec_state(ref.spec) is None:
                raise SpecError(
                    f"no spec {ref.spec!r} in the catalog {catalog.url_masked}",
                    hint="bake the parent spec first (with this catalog)",
                )
            known = ", ".join(c.channel for c in catalog.channels(ref.spec) if c.build_id) or "none"
            raise SpecError(
                f"spec {ref.spec} has no channel {ref.channel!r} (its channels: {known})",
                hint=f"`imgpipe promote {ref.spec} BUILD --channel {ref.channel}` points it at a build",
            )
        build = catalog.get(channel.build_id)
        via = f"{ref} is build {channel.build_id}"
    else:
        assert ref.build is not None
        build = catalog.get(ref.build)
        via = f"{ref} is build {build.id if build else ref.build}"
    if build is None:
        raise SpecError(
            f"no build {ref.build!r} in the catalog {catalog.url_masked}",
            hint=f"`imgpipe builds {ref.spec}` lists its builds",
        )
    if build.spec_name != ref.spec:
        raise SpecError(f"{via}, a build of {build.spec_name}, not of {ref.spec}")
    if build.revoked_at is not None:
        raise SpecError(
            f"{via}, which was revoked ({build.revoked_reason or 'no reason given'}): "
            "a revoked build can't be a parent",
            hint="promote a good build to the channel, or name another build",
        )
    if build.pruned_at is not None:
        raise SpecError(f"{via}, which was pruned on {build.pruned_at:%Y-%m-%d}: its images are gone")
    if not build.usable:
        raise SpecError(f"{via}, which {build.status.value}: only a succeeded build can be a parent")
    return build


def _kind_of(target: TargetBuildView, kind: str) -> bool:
    from imgpipe.core.artifact import AMI as AMI_KIND
    from imgpipe.core.artifact import IMAGE_FILE

    wanted = IMAGE_FILE if kind == IMAGE else AMI_KIND
    return target.status.value == "succeeded" and any(a.kind == wanted for a in target.artifacts)


def pick_parent_target(build: BuildView, ref: ParentRef, kind: str) -> TargetBuildView:
    """The parent's target that has an artifact of `kind`: the one the reference names, or
    the only one; SpecError when there is none or several."""
    what = "image file" if kind == IMAGE else "AMI"
    if ref.target is not None:
        found = build.target(ref.target)
        if found is None:
            names = ", ".join(t.target for t in build.targets)
            raise SpecError(f"{ref}: build {build.id} has no target {ref.target!r} (its targets: {names})")
        if not _kind_of(found, kind):
            raise SpecError(f"{ref}: target {ref.target} of build {build.id} made no {what}")
        return found
    candidates = [t for t in build.targets if _kind_of(t, kind)]
    if not candidates:
        raise SpecError(f"{ref}: build {build.id} has no target that made an {what}")
    if len(candidates) > 1:
        names = ", ".join(t.target for t in candidates)
        raise SpecError(
            f"{ref} is ambiguous: build {build.id} has several targets with an {what} ({names})",
            hint=f"name one: {ref.spec}/TARGET@{ref.channel or ref.build}, e.g. "
            f"{ref.spec}/{candidates[0].target}@{ref.channel or ref.build}",
        )
    return candidates[0]


def _image_file(ref: ParentRef, build: BuildView, target: TargetBuildView) -> ResolvedParent:
    from imgpipe.core.artifact import IMAGE_FILE

    files = [a for a in target.artifacts if a.kind == IMAGE_FILE]
    artifact = next((a for a in files if a.ref == target.artifact_id), files[0])
    here = socket.gethostname()
    if artifact.host and artifact.host != here:
        raise SpecError(
            f"{ref} is build {build.id}, whose image file {artifact.ref} is on host {artifact.host}, "
            f"not on this host ({here})",
            hint=f"bake the child on {artifact.host}",
        )
    path = Path(target.record.get("output_dir") or ".") / artifact.ref
    if not path.is_file():
        raise SpecError(
            f"{ref} is build {build.id}, whose image file {path} is missing (pruned or moved?)",
            hint="promote a build whose image file exists, or bake the parent again",
        )
    return ResolvedParent(
        str(ref),
        build.spec_name,
        build.id,
        target.target,
        IMAGE,
        path=str(path),
        sha256=artifact.data.get("sha256"),
        size=artifact.data.get("size"),
    )


def _region_of(settings: Any) -> str:
    from imgpipe.aws.session import AwsSession

    return AwsSession(settings.aws).region


def _ami(ref: ParentRef, build: BuildView, target: TargetBuildView, region: str) -> ResolvedParent:
    from imgpipe.core.artifact import AMI as AMI_KIND

    amis = [a for a in target.artifacts if a.kind == AMI_KIND]
    found = next((a for a in amis if a.region == region), None)
    if found is None:
        regions = ", ".join(sorted({str(a.region) for a in amis}))
        raise SpecError(
            f"{ref} is build {build.id}, which has no AMI in {region} (only in {regions})",
            hint="copy the parent's AMI to that region (an `ami` publisher's regions), or build there",
        )
    return ResolvedParent(
        str(ref), build.spec_name, build.id, target.target, AMI, image_id=found.ref, region=region
    )


def resolve_parents(
    catalog: Catalog, loaded: LoadedSpec, region_of: Any = _region_of
) -> dict[str, ResolvedParent]:
    """What each of the spec's targets starts from, when the spec has a parent ({} if not).
    `region_of(settings)`: an AMI target's region (default: as its AWS session finds it)."""
    ref = parent_ref(loaded)
    if ref is None:
        return {}
    try:
        build = find_parent_build(catalog, ref)
        resolved: dict[str, ResolvedParent] = {}
        for name, settings in loaded.targets.items():
            kind = needs(settings)
            target = pick_parent_target(build, ref, kind)
            if kind == IMAGE:
                resolved[name] = _image_file(ref, build, target)
            else:
                resolved[name] = _ami(ref, build, target, region_of(settings))
    except SpecError as exc:
        raise _located(loaded, exc.message, exc.hint) from None
    return resolved


def with_parents(catalog: Catalog, loaded: LoadedSpec, region_of: Any = _region_of) -> LoadedSpec:
    """The spec with its parent resolved (itself when it has none, or already resolved):
    `parents` filled in, and each AMI target given the parent's AMI as its `source_ami`."""
    if loaded.spec.source.parent is None or loaded.parents:
        return loaded
    parents = resolve_parents(catalog, loaded, region_of)
    targets = dict(loaded.targets)
    for name, parent in parents.items():
        if parent.kind == AMI:
            targets[name] = targets[name].model_copy(update={"source_ami": parent.image_id})
    return replace(loaded, parents=parents, targets=targets)


def parent_spec(loaded: LoadedSpec) -> str | None:
    """The name of the spec this one is built on, if any."""
    ref = parent_ref(loaded)
    return ref.spec if ref else None


def build_order(names: dict[str, str | None]) -> tuple[list[str], list[list[str]]]:
    """Specs ordered so that a parent comes before its children ({spec: parent spec}; a
    parent outside `names` is no constraint), and the cycles found, each as the specs in it
    in parent order. The specs in a cycle, and their descendants, are not in the order."""
    order: list[str] = []
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "visiting" | "done" | "blocked"

    def visit(name: str, path: list[str]) -> bool:
        if state.get(name) == "done":
            return True
        if state.get(name) == "blocked":
            return False
        if state.get(name) == "visiting":
            cycle = path[path.index(name) :]
            cycles.append(cycle)
            for member in cycle:
                state[member] = "blocked"
            return False
        state[name] = "visiting"
        parent = names.get(name)
        ok = True
        if parent is not None and parent in names:
            ok = visit(parent, [*path, name])
        if state.get(name) == "blocked":
            return False
        state[name] = "done" if ok else "blocked"
        if ok:
            order.append(name)
        return ok

    for name in names:
        visit(name, [])
    return order, cycles


def chain(catalog: Catalog, target: TargetBuildView, limit: int = 32) -> list[dict[str, Any]]:
    """The images `target` is built on, nearest first: each parent's reference as its
    child's spec named it, its build and target, and whether that build is still usable."""
    links: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    current: TargetBuildView | None = target
    while current is not None and current.parent_build_id and len(links) < limit:
        key = (current.parent_build_id, str(current.parent_target))
        if key in seen:  # never loops, whatever the catalog holds
            break
        seen.add(key)
        build = catalog.get(current.parent_build_id)
        link: dict[str, Any] = {
            "ref": current.parent_ref,
            "build_id": current.parent_build_id,
            "target": current.parent_target,
            "spec": build.spec_name if build else None,
            "status": build.status.value if build else "gone from the catalog",
        }
        if build is not None and build.revoked_at is not None:
            link["status"] = "revoked"
        elif build is not None and build.pruned_at is not None:
            link["status"] = "pruned"
        links.append(link)
        current = build.target(str(current.parent_target)) if build else None
    return links
