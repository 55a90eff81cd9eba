"""The input fingerprint of a build target: a sha256 over every input that can change its
image, kept with its parts so that `status` can say which input changed (`explain`).
A missing input is a bug that ships yesterday's image (Rosco's partial bake keys), so the
rule is: when in doubt, it is an input. Publish settings have their own fingerprint, so
changing only them re-runs the publishers instead of rebaking.

`parts` (JSON, stable keys; FORMAT changes when their meaning does):

- spec: {dotted field: digest} of the resolved spec, without what is not an input or is
  covered elsewhere: description, variable declarations (values are under `variables`),
  source (under `source`), publish and targets (this target's settings are under `target`),
  provision.roles_path and provision.requirements (what they point at counts, not where).
- target: {dotted setting: value} of the target's builder settings, minus `publish:`.
- variables: {name: "sha256:..."} of each declared variable's value, "hmac:..." (keyed
  with the catalog's key) for sensitive ones: never a value or a plain hash of one.
- roles: {role: {path in role: file entry} | None (not found)}: the role closure.
- playbooks, playbook_files: {path relative to the spec: file entry}; playbook_vars: the
  vars files they read, keyed like sensitive values (secrets live there).
- dynamic_includes: includes whose name is templated; what they pull in is not known.
- verify: the image tests; requirements: the requirements file; installed: what it
  installed ({name: version}, added by `with_installed` once known, after the install).
- seal: imgpipe's seal playbook and role (None: sealing disabled); imgpipe, ansible_core.
- source: {"kind": ..., **identity} (sources.identity); for a spec with `source.parent`,
  {"kind": "parent", "build_id", "target"}: a moved parent channel changes the child.
- info: for messages only (when the base was built, the bootstrap settings, the parent
  reference as the spec says it); not hashed.

A file entry is its content's sha256, with "+x" when executable (rolefiles.file_entry)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from imgpipe.fingerprint_changes import explain
from imgpipe.rolefiles import file_entry, role_closure, tree_files
from imgpipe.roles import roles_path
from imgpipe.shipped import shipped_dir
from imgpipe.sources.identity import SourceIdentity, source_identity
from imgpipe.spec.load import LoadedSpec

__all__ = [
    "Fingerprint",
    "SourceIdentity",
    "explain",
    "publish_fingerprint",
    "source_identity",
    "target_fingerprint",
    "with_installed",
]

FORMAT = 1
INFO = "info"  # the one part left out of the digest
# schedule and rebuild say when to bake, not what: changing them never makes an image stale
_NOT_SPEC_INPUTS = {
    "description",
    "variables",
    "source",
    "publish",
    "targets",
    "schedule",
    "rebuild",
    "channels",
    "retention",
}
_NOT_PROVISION_INPUTS = ("roles_path", "requirements")


@dataclass(frozen=True)
class Fingerprint:
    digest: str  # sha256 hex over the canonical JSON of parts (without "info")
    parts: dict[str, Any]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def parts_digest(parts: dict[str, Any]) -> str:
    """The digest of a `parts` dict (e.g. one read back from the catalog)."""
    return canonical_digest({key: value for key, value in parts.items() if key != INFO})


def keyed_digest(key: bytes, name: str, value: Any) -> str:
    """HMAC-SHA256 of a named value: a low-entropy secret does not fall to a dictionary
    without the key, and two variables holding the same secret do not look alike."""
    message = name.encode() + b"\0" + canonical_json(value).encode()
    return "hmac:" + hmac.new(key, message, hashlib.sha256).hexdigest()


def keyed_file_digest(key: bytes, path: Path) -> str:
    """HMAC-SHA256 of a file that may hold secrets (a vars file)."""
    with open(path, "rb") as fh:
        return "hmac:" + hmac.new(key, fh.read(), hashlib.sha256).hexdigest()


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _spec_part(loaded: LoadedSpec) -> dict[str, str]:
    data = loaded.spec.model_dump(mode="json", exclude=_NOT_SPEC_INPUTS)
    data["provision"] = {k: v for k, v in data["provision"].items() if k not in _NOT_PROVISION_INPUTS}
    data["provision"].get("ansible", {}).pop("verbosity", None)  # how much it logs, not what it makes
    return {key: "sha256:" + canonical_digest(value) for key, value in _flatten(data).items()}


def _variables_part(loaded: LoadedSpec, key: bytes) -> dict[str, str]:
    part = {}
    for name, declared in loaded.spec.variables.items():
        resolved = loaded.variables.get(name)
        value = resolved.value if resolved is not None else None
        if declared.sensitive or (resolved is not None and resolved.sensitive):
            part[name] = keyed_digest(key, name, value)
        else:
            part[name] = "sha256:" + canonical_digest(value)
    return part


def _files(paths: dict[str, Path]) -> dict[str, str]:
    return {key: file_entry(path) for key, path in sorted(paths.items())}


def _requirements_part(loaded: LoadedSpec) -> str | None:
    name = loaded.spec.provision.requirements
    if not name:
        return None
    path = loaded.directory / name
    return file_entry(path) if path.is_file() else "missing"


def _installed_part(loaded: LoadedSpec) -> dict[str, str]:
    """What the requirements file will install (its offline sources' content or commit)."""
    from imgpipe.requirement_sources import source_versions

    name = loaded.spec.provision.requirements
    return source_versions(loaded.directory / name) if name else {}


def _seal_part(loaded: LoadedSpec) -> str | None:
    if not loaded.spec.seal.enabled:
        return None
    playbook = shipped_dir("playbooks") / "seal.yml"
    role = shipped_dir("roles") / "imgpipe_seal"
    return "sha256:" + canonical_digest({"playbook": file_entry(playbook), "role": tree_files(role)})


def _ansible_cfg_part(loaded: LoadedSpec) -> dict[str, str]:
    """The spec's ansible.cfg by content (it can change what the roles do); absent when the
    spec has none, so specs without one keep the fingerprints they had."""
    from imgpipe.ansible_options import config_file

    config = config_file(loaded)
    if config is None:
        return {}
    return {"ansible_cfg": file_entry(config) if config.is_file() else "missing"}


def _versions() -> dict[str, str]:
    import ansible.release

    import imgpipe

    return {"imgpipe": imgpipe.__version__, "ansible_core": ansible.release.__version__}


def _info(loaded: LoadedSpec, source: SourceIdentity, target: str) -> dict[str, Any]:
    info: dict[str, Any] = {}
    parent = loaded.parents.get(target)
    if source.kind == "parent" and parent is not None:
        info["parent"] = parent.ref  # the channel that named it: for messages, never hashed
    if source.built:
        info["base_built"] = source.built
    if source.kind == "bootstrap" and loaded.spec.source.bootstrap is not None:
        info["bootstrap"] = loaded.spec.source.bootstrap.model_dump(mode="json")
    return info


def target_fingerprint(
    loaded: LoadedSpec,
    target: str,
    *,
    hmac_key: bytes,
    source: SourceIdentity,
    installed_roles: Path | None = None,
) -> Fingerprint:
    """Every input of `target`'s image. `source`: source_identity(loaded, target), passed in
    so the caller decides when an AMI filter is resolved. `installed_roles`: where the
    requirements file installed its roles, when it has run (their content then counts;
    before, such roles are recorded as not found). Versions of what the requirements file
    installed are known only after the install: add them with `with_installed`."""
    if target not in loaded.targets:
        raise ValueError(f"no target {target!r} in {loaded.path.name}")
    prov = loaded.spec.provision
    here = loaded.directory
    closure = role_closure(
        [ref.role for ref in prov.role_refs()],
        [here / p for p in prov.playbooks],
        roles_path(loaded, installed_roles),
        here,
    )
    verify = loaded.spec.verify
    tests = [*verify.testinfra, *verify.playbooks] if verify.enabled else []
    parts: dict[str, Any] = {
        "format": FORMAT,
        "spec": _spec_part(loaded),
        "target": _flatten(loaded.targets[target].model_dump(mode="json", exclude={"publish"})),
        "variables": _variables_part(loaded, hmac_key),
        "roles": {name: tree_files(path) if path else None for name, path in closure.roles.items()},
        "playbooks": _files(closure.playbooks),
        "playbook_files": _files(closure.playbook_files),
        "playbook_vars": {
            key: keyed_file_digest(hmac_key, path) for key, path in sorted(closure.vars_files.items())
        },
        "dynamic_includes": closure.dynamic,
        "verify": _files({Path(t).as_posix(): here / t for t in tests if (here / t).is_file()}),
        "requirements": _requirements_part(loaded),
        "installed": _installed_part(loaded),
        "seal": _seal_part(loaded),
        **_ansible_cfg_part(loaded),
        **_versions(),
        "source": {"kind": source.kind, **source.identity},
        INFO: _info(loaded, source, target),
    }
    return Fingerprint(parts_digest(parts), parts)


def with_installed(fp: Fingerprint, versions: dict[str, str]) -> Fingerprint:
    """`fp` plus the versions of the roles and collections the requirements file installed."""
    parts = {**fp.parts, "installed": dict(sorted(versions.items()))}
    return Fingerprint(parts_digest(parts), parts)


def publish_fingerprint(loaded: LoadedSpec, target: str) -> str:
    """sha256 over what `target`'s publish steps do with its artifact: each step's name,
    publisher and settings (the `publish:` shorthand's too). Changing only these re-runs
    the publishers on the existing artifact."""
    if target not in loaded.targets:
        raise ValueError(f"no target {target!r} in {loaded.path.name}")
    inline = getattr(loaded.targets[target], "publish", None)
    doc = {
        "format": FORMAT,
        "shorthand": inline.model_dump(mode="json") if isinstance(inline, BaseModel) else inline,
        "steps": [
            {
                "name": step.name,
                "publisher": step.publisher,
                "source": step.source,
                "refines": step.refines,
                "settings": step.settings.model_dump(mode="json"),
            }
            for step in loaded.steps_for(target)
        ],
    }
    return canonical_digest(doc)
