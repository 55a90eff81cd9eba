"""manifest.json: Packer's manifest shape (builds[], last_run_uuid) so existing
tooling reads it, plus imgpipe's own record of inputs and timings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TargetRecord:
    target: str
    builder_type: str
    ok: bool
    build_time: int
    files: list[dict[str, Any]] = field(default_factory=list)
    artifact_id: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    build_vm: dict[str, Any] = field(default_factory=dict)
    published: list[Any] = field(default_factory=list)  # imgpipe.publish.base.Publication
    verify: dict[str, Any] = field(default_factory=dict)  # the fresh boot's checks and tests
    sbom: dict[str, Any] | None = None  # the SBOM file beside the image: file, sha256, packages
    data: dict[str, Any] = field(default_factory=dict)  # the builder's own record (AMIs, snapshots)


def write_manifest(
    path: Path, *, run_uuid: str, spec: dict[str, Any], targets: list[TargetRecord], inputs: dict[str, Any]
) -> None:
    builds = [
        {
            "name": t.target,
            "builder_type": t.builder_type,
            "build_time": t.build_time,
            "files": t.files,
            "artifact_id": t.artifact_id,
            "packer_run_uuid": run_uuid,
            "custom_data": {"spec": spec["name"], "build_id": run_uuid, **t.data},
        }
        for t in targets
        if t.ok
    ] + [
        {
            "name": f"{t.target}:{p.publisher}",
            "builder_type": p.publisher_type,
            "build_time": t.build_time,
            "files": [],
            "artifact_id": p.artifact_id,
            "packer_run_uuid": run_uuid,
            "custom_data": {"spec": spec["name"], "build_id": run_uuid, "from": t.target, **p.data},
        }
        for t in targets
        if t.ok
        for p in t.published
    ]
    doc = {
        "builds": builds,
        "last_run_uuid": run_uuid,
        "imgpipe": {
            **inputs,
            "spec": spec,
            "targets": {
                t.target: {
                    "ok": t.ok,
                    "source": t.source,
                    "timings": t.timings,
                    "error": t.error,
                    "build_vm": t.build_vm,
                    "verify": t.verify,
                    "sbom": t.sbom,
                }
                for t in targets
            },
        },
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
