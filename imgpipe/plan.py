"""The resolved plan of a spec, as `imgpipe inspect` shows it: targets, source,
roles with the path each resolves to, variables with where each value came from."""

from __future__ import annotations

from typing import Any

from imgpipe.redact import MASK
from imgpipe.roles import resolve_roles
from imgpipe.spec.load import LoadedSpec
from imgpipe.spec.variables import ResolvedVar


def resolved_plan(loaded: LoadedSpec, variables: dict[str, ResolvedVar]) -> dict[str, Any]:
    spec = loaded.spec
    return {
        "spec": str(loaded.path),
        "name": spec.name,
        "description": spec.description,
        "source": spec.source.model_dump(mode="json", exclude_none=True) or {"bootstrap": {}},
        "targets": {name: settings.model_dump(mode="json") for name, settings in loaded.targets.items()},
        "roles": [
            {"name": r.name, "path": str(r.path) if r.path else None, "sha256": r.sha256}
            for r in resolve_roles(loaded)
        ],
        "playbooks": [str((loaded.directory / p).resolve()) for p in spec.provision.playbooks],
        "variables": {
            name: {
                "value": MASK if v.sensitive else v.value,
                "origin": v.origin,
                "sensitive": v.sensitive,
            }
            for name, v in sorted(variables.items())
        },
        "seal": spec.seal.model_dump(mode="json"),
    }


def render_plan(plan: dict[str, Any]) -> str:
    lines = [f"{plan['name']}  ({plan['spec']})"]
    if plan["description"]:
        lines.append(f"  {plan['description']}")
    lines.append(f"source: {plan['source']}")
    lines.append("targets:")
    for name, settings in plan["targets"].items():
        rest = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "builder")
        lines.append(f"  {name}: {settings['builder']} ({rest})")
    lines.append("roles:")
    for role in plan["roles"]:
        lines.append(f"  {role['name']}: {role['path'] or 'NOT FOUND'}")
    for playbook in plan["playbooks"]:
        lines.append(f"playbook: {playbook}")
    lines.append("variables:")
    for name, var in plan["variables"].items():
        lines.append(f"  {name} = {var['value']!r}  (from {var['origin']})")
    skipped = plan["seal"]["skip"]
    lines.append(
        f"seal: {'on' if plan['seal']['enabled'] else 'off'}"
        + (f", skipping {', '.join(skipped)}" if skipped else "")
    )
    return "\n".join(lines)
