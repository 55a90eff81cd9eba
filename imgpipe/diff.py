"""What changed between two builds: packages per target (from their SBOMs) and the
inputs recorded in manifest.json (imgpipe and ansible-core versions, roles, sources,
spec path). Core only: the result renders as text or JSON, nothing prints here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgpipe.debversion import compare_versions
from imgpipe.errors import SpecError
from imgpipe.sbom import Package, read_sbom

JSON_VERSION = 1


@dataclass(frozen=True)
class Build:
    """One build as `imgpipe diff` sees it: its manifest and each target's packages
    (None for a target that recorded no SBOM, e.g. because it failed)."""

    manifest_path: Path
    build_id: str
    inputs: dict[str, Any]
    packages: dict[str, dict[str, Package] | None]


@dataclass(frozen=True)
class VersionChange:
    name: str
    old: str
    new: str


@dataclass(frozen=True)
class ValueChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class RoleChange:
    name: str
    change: str  # "added", "removed" or "changed" (its sha256)
    old_sha256: str | None
    new_sha256: str | None


@dataclass
class TargetDiff:
    target: str
    missing_sbom: list[str] = field(default_factory=list)  # "a" and/or "b"
    added: list[Package] = field(default_factory=list)
    removed: list[Package] = field(default_factory=list)
    upgraded: list[VersionChange] = field(default_factory=list)
    downgraded: list[VersionChange] = field(default_factory=list)
    source: list[ValueChange] = field(default_factory=list)


@dataclass
class BuildDiff:
    a: Build
    b: Build
    inputs: list[ValueChange] = field(default_factory=list)
    roles: list[RoleChange] = field(default_factory=list)
    targets: list[TargetDiff] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A stable, versioned JSON shape (keys never renamed without bumping "v")."""
        return {
            "v": JSON_VERSION,
            "a": {"manifest": str(self.a.manifest_path), "build_id": self.a.build_id},
            "b": {"manifest": str(self.b.manifest_path), "build_id": self.b.build_id},
            "inputs": [_change_json(c) for c in self.inputs],
            "roles": [asdict(c) for c in self.roles],
            "targets": {t.target: _target_json(t) for t in self.targets},
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
        }


def load_build(path: Path) -> Build:
    """A build from its output directory or its manifest.json. Raises SpecError (bad
    input, exit 2) naming the file when it is not a build, or records no SBOM at all."""
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise SpecError(
            f"{path}: not a build: no {manifest_path.name} there",
            hint="give a build's output directory (OUTPUT/<name>/<build-id>/) or its manifest.json",
        )
    try:
        doc = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{manifest_path}: cannot read the manifest: {exc}") from exc
    record = doc.get("imgpipe") if isinstance(doc, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("targets"), dict):
        raise SpecError(f"{manifest_path}: not an imgpipe manifest (no imgpipe.targets record)")
    packages = {
        name: _target_packages(manifest_path, name, target) for name, target in record["targets"].items()
    }
    if all(p is None for p in packages.values()):
        raise SpecError(
            f"{manifest_path}: this build recorded no SBOM for any target",
            hint="builds made before imgpipe wrote SBOMs, or whose every target failed, cannot be diffed",
        )
    build_id = str(doc.get("last_run_uuid") or manifest_path.parent.name)
    return Build(manifest_path, build_id, record, packages)


def _target_packages(manifest_path: Path, name: str, target: Any) -> dict[str, Package] | None:
    sbom = target.get("sbom") if isinstance(target, dict) else None
    if not sbom:
        return None
    if not isinstance(sbom, dict) or not isinstance(sbom.get("file"), str):
        raise SpecError(f"{manifest_path}: target {name}: sbom record has no file name: {sbom!r}")
    sbom_path = manifest_path.parent / sbom["file"]
    try:
        data = sbom_path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{sbom_path}: cannot read target {name}'s SBOM: {exc}") from exc
    if sbom.get("sha256") and hashlib.sha256(data).hexdigest() != sbom["sha256"]:
        raise SpecError(f"{sbom_path}: target {name}'s SBOM does not match the sha256 in {manifest_path}")
    return read_sbom(sbom_path)


def diff_builds(a: Build, b: Build) -> BuildDiff:
    """Changes from build a to b, each list sorted by name so output is stable."""
    result = BuildDiff(a, b)
    result.inputs = _input_changes(a.inputs, b.inputs)
    result.roles = _role_changes(a.inputs.get("roles") or [], b.inputs.get("roles") or [])
    result.only_in_a = sorted(set(a.packages) - set(b.packages))
    result.only_in_b = sorted(set(b.packages) - set(a.packages))
    for name in sorted(set(a.packages) & set(b.packages)):
        target = TargetDiff(name)
        target.source = _dict_changes(_target_source(a, name), _target_source(b, name), "source.")
        old, new = a.packages[name], b.packages[name]
        target.missing_sbom = [side for side, pkgs in (("a", old), ("b", new)) if pkgs is None]
        if old is not None and new is not None:
            _compare_packages(target, old, new)
        result.targets.append(target)
    return result


def _input_changes(a: dict[str, Any], b: dict[str, Any]) -> list[ValueChange]:
    changes = [ValueChange(key, a.get(key), b.get(key)) for key in ("version", "ansible_core")]
    changes.append(ValueChange("spec", _spec_path(a), _spec_path(b)))
    return [c for c in changes if c.old != c.new]


def _spec_path(inputs: dict[str, Any]) -> Any:
    spec = inputs.get("spec")
    return spec.get("path") if isinstance(spec, dict) else spec


def _role_changes(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[RoleChange]:
    old = {str(r.get("name")): r.get("sha256") for r in a if isinstance(r, dict)}
    new = {str(r.get("name")): r.get("sha256") for r in b if isinstance(r, dict)}
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(RoleChange(name, "removed", old[name], None))
        elif name not in old:
            changes.append(RoleChange(name, "added", None, new[name]))
        elif old[name] != new[name]:
            changes.append(RoleChange(name, "changed", old[name], new[name]))
    return changes


def _target_source(build: Build, name: str) -> dict[str, Any]:
    target = build.inputs["targets"].get(name)
    source = target.get("source") if isinstance(target, dict) else None
    return source if isinstance(source, dict) else {}


def _dict_changes(a: dict[str, Any], b: dict[str, Any], prefix: str) -> list[ValueChange]:
    return [
        ValueChange(f"{prefix}{key}", a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def _compare_packages(target: TargetDiff, old: dict[str, Package], new: dict[str, Package]) -> None:
    target.added = [new[k] for k in sorted(set(new) - set(old))]
    target.removed = [old[k] for k in sorted(set(old) - set(new))]
    for key in sorted(set(old) & set(new)):
        before, after = old[key].version, new[key].version
        if before == after:
            continue
        try:
            order = compare_versions(before, after)
        except ValueError as exc:
            raise SpecError(f"target {target.target}: package {key}: {exc}") from exc
        if order < 0:
            target.upgraded.append(VersionChange(key, before, after))
        elif order > 0:
            target.downgraded.append(VersionChange(key, before, after))


def _change_json(change: ValueChange | VersionChange) -> dict[str, Any]:
    key = "field" if isinstance(change, ValueChange) else "name"
    return {key: getattr(change, key), "old": change.old, "new": change.new}


def _target_json(target: TargetDiff) -> dict[str, Any]:
    return {
        "missing_sbom": target.missing_sbom,
        "added": [{"name": p.name, "version": p.version} for p in target.added],
        "removed": [{"name": p.name, "version": p.version} for p in target.removed],
        "upgraded": [_change_json(c) for c in target.upgraded],
        "downgraded": [_change_json(c) for c in target.downgraded],
        "source": [_change_json(c) for c in target.source],
    }


def render_text(result: BuildDiff) -> str:
    """The human view: a short section per target, then the inputs that differ."""
    lines = [f"a: {result.a.manifest_path}", f"b: {result.b.manifest_path}"]
    for target in result.targets:
        lines.append(f"target {target.target}:")
        lines += _target_lines(result, target) or ["  no package or source changes"]
    lines += [f"target {name}: only in build a" for name in result.only_in_a]
    lines += [f"target {name}: only in build b" for name in result.only_in_b]
    lines += [f"inputs: {c.field}: {_show(c.old)} -> {_show(c.new)}" for c in result.inputs]
    lines += [_role_line(role) for role in result.roles]
    if not (result.inputs or result.roles):
        lines.append("inputs: same imgpipe, ansible-core, spec path and roles")
    return "\n".join(lines)


def _target_lines(result: BuildDiff, target: TargetDiff) -> list[str]:
    return [
        *(f"  no SBOM in build {side} ({_build_of(result, side)})" for side in target.missing_sbom),
        *(f"  + {p.name} {p.version}" for p in target.added),
        *(f"  - {p.name} {p.version}" for p in target.removed),
        *(f"  ~ {c.name} {c.old} -> {c.new}" for c in target.upgraded),
        *(f"  ~ {c.name} {c.old} -> {c.new} (downgrade)" for c in target.downgraded),
        *(f"  inputs: {c.field}: {_show(c.old)} -> {_show(c.new)}" for c in target.source),
    ]


def _role_line(role: RoleChange) -> str:
    if role.change == "changed":
        return f"inputs: role {role.name}: sha256 {_short(role.old_sha256)} -> {_short(role.new_sha256)}"
    return f"inputs: role {role.name} {role.change} (sha256 {_short(role.old_sha256 or role.new_sha256)})"


def _build_of(result: BuildDiff, side: str) -> str:
    return (result.a if side == "a" else result.b).build_id


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value) if isinstance(value, dict | list) else str(value)


def _short(sha: Any) -> str:
    return str(sha)[:12] if sha else "(no digest)"
