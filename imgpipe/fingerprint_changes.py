"""What changed between two fingerprints, as lines a person reads ("role nginx:
tasks/main.yml changed"). Never shows a sensitive value: such parts are keyed digests,
only compared. Never silent: parts that differ always yield at least one line, a part
this module does not know included."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_UNSET = object()
_SHOWN_CHARS = 60


def _diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(key, "added" | "removed" | "changed"), sorted by key."""
    old, new = old or {}, new or {}
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append((key, "added"))
        elif key not in new:
            changes.append((key, "removed"))
        elif old[key] != new[key]:
            changes.append((key, "changed"))
    return changes


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _file_change(old: str, new: str) -> str:
    """How one file entry ('<sha256>' or '<sha256>+x') changed."""
    if old.removesuffix("+x") != new.removesuffix("+x"):
        return "changed"
    return "mode changed (now executable)" if new.endswith("+x") else "mode changed (no longer executable)"


def _files(old: Any, new: Any, label: str) -> list[str]:
    old, new = old or {}, new or {}
    return [
        f"{label} {key} {_file_change(old[key], new[key]) if what == 'changed' else what}"
        for key, what in _diff(old, new)
    ]


def _roles(old: Any, new: Any) -> list[str]:
    old, new = old or {}, new or {}
    lines = []
    for name, what in _diff(old, new):
        if what == "added" and new[name] is None:
            lines.append(f"role {name}: added (not found on the roles path)")
        elif what != "changed":
            lines.append(f"role {name}: {what}")
        elif old[name] is None:
            lines.append(f"role {name}: now found on the roles path")
        elif new[name] is None:
            lines.append(f"role {name}: no longer found on the roles path")
        else:
            lines += _files(old[name], new[name], f"role {name}:")
    return lines


def _variables(old: Any, new: Any, sensitive: set[str] | frozenset[str]) -> list[str]:
    old, new = old or {}, new or {}
    lines = []
    for name, what in _diff(old, new):
        keyed = any(str(side.get(name, "")).startswith("hmac:") for side in (old, new))
        lines.append(f"variable {name}: {what}" + (" (sensitive)" if keyed or name in sensitive else ""))
    return lines


def _target(old: Any, new: Any) -> list[str]:
    old, new = old or {}, new or {}
    return [
        f"target setting {key}: {_show(old.get(key, _UNSET))} -> {_show(new.get(key, _UNSET))}"
        for key, _ in _diff(old, new)
    ]


def _bootstrap(old: dict[str, Any], new: dict[str, Any], old_info: Any, new_info: Any) -> list[str]:
    if old.get("recipe") != new.get("recipe"):
        before = (old_info or {}).get("bootstrap") or {}
        after = (new_info or {}).get("bootstrap") or {}
        details = [
            f"{key}: {_show(before.get(key, _UNSET))} -> {_show(after.get(key, _UNSET))}"
            for key, _ in _diff(before, after)
        ]
        return ["bootstrap recipe changed" + (f" ({'; '.join(details)})" if details else "")]
    if old.get("base") == new.get("base"):
        return []
    if new.get("base") is None:
        return ["base image: not cached here (the next bake bootstraps it)"]
    built = (new_info or {}).get("base_built")
    if old.get("base") is None:
        return ["source base bootstrapped" + (f" {built}" if built else "")]
    was = (old_info or {}).get("base_built")
    return ["source base rebuilt" + (f" {built}" if built else "") + (f" (was {was})" if was else "")]


def _source(old: Any, new: Any, old_info: Any, new_info: Any) -> list[str]:
    old, new = old or {}, new or {}
    if old == new:
        return []
    kind = new.get("kind")
    if old.get("kind") != kind:
        return [f"source: {old.get('kind')} -> {kind}"]
    if kind == "bootstrap":
        lines = _bootstrap(old, new, old_info, new_info)
    elif kind == "image":
        lines = [
            f"source image: content changed (sha256 {str(old.get('sha256'))[:12]}… -> "
            f"{str(new.get('sha256'))[:12]}…)"
        ]
    elif kind == "url":
        lines = [f"source image checksum: {old.get('checksum')} -> {new.get('checksum')}"]
    elif kind == "ami" and old.get("via") == new.get("via") == "filter":
        lines = [f"source AMI filter now resolves to {new.get('image_id')} (was {old.get('image_id')})"]
    elif kind == "ami":
        lines = [f"source AMI: {old.get('image_id')} -> {new.get('image_id')}"]
    elif kind == "parent":
        ref = (new_info or {}).get("parent") or (old_info or {}).get("parent") or "parent"
        now, was = new.get("build_id"), old.get("build_id")
        if now != was:
            lines = [f"parent {ref} is now build {now} (was {was})"]
        else:
            lines = [f"parent {ref}: target {old.get('target')} -> {new.get('target')} of build {now}"]
    else:
        lines = []
    return lines or [f"source {key} {what}" for key, what in _diff(old, new)]


def _requirements(old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if old is None:
        return ["requirements file added"]
    return ["requirements file removed"] if new is None else ["requirements changed"]


def _installed(old: Any, new: Any) -> list[str]:
    old, new = old or {}, new or {}
    words = {"added": "now installed", "removed": "no longer installed"}
    return [
        f"requirements: {name} {old[name]} -> {new[name]}"
        if what == "changed"
        else f"requirements: {name} {words[what]}"
        for name, what in _diff(old, new)
    ]


def _seal(old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if old is None:
        return ["seal role now runs (sealing enabled)"]
    return ["seal role no longer runs (sealing disabled)"] if new is None else ["seal role changed"]


def _dynamic(old: Any, new: Any) -> list[str]:
    before, after = set(old or ()), set(new or ())
    return [f"templated include added: {e}" for e in sorted(after - before)] + [
        f"templated include removed: {e}" for e in sorted(before - after)
    ]


def _version(label: str) -> Callable[[Any, Any], list[str]]:
    return lambda old, new: [] if old == new else [f"{label} {old} -> {new}"]


_SECTIONS: dict[str, Callable[[Any, Any], list[str]]] = {
    "format": lambda o, n: [] if o == n else [f"fingerprint format {o} -> {n} (inputs are compared anew)"],
    "imgpipe": _version("imgpipe"),
    "ansible_core": _version("ansible-core"),
    "spec": lambda o, n: [f"spec {key}: {what}" for key, what in _diff(o, n)],
    "target": _target,
    "roles": _roles,
    "playbooks": lambda o, n: _files(o, n, "playbook"),
    "playbook_files": lambda o, n: _files(o, n, "playbook file"),
    "playbook_vars": lambda o, n: _files(o, n, "playbook vars file"),
    "dynamic_includes": _dynamic,
    "verify": lambda o, n: _files(o, n, "image test"),
    "requirements": _requirements,
    "installed": _installed,
    "seal": _seal,
    "ansible_cfg": lambda o, n: [] if o == n else ["the spec's ansible.cfg changed"],
}


def explain(
    old: dict[str, Any], new: dict[str, Any], *, sensitive: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Lines saying what changed from `old` to `new` (two Fingerprint.parts); empty when
    no input changed. `sensitive`: variable names to mark as such (keyed ones always are)."""
    lines = _source(old.get("source"), new.get("source"), old.get("info"), new.get("info"))
    for section, describe in _SECTIONS.items():
        lines += describe(old.get(section), new.get(section))
    lines += _variables(old.get("variables"), new.get("variables"), sensitive)
    known = {*_SECTIONS, "source", "variables", "info"}
    lines += [
        f"{key} changed" for key in sorted((set(old) | set(new)) - known) if old.get(key) != new.get(key)
    ]
    return lines
