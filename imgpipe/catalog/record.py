"""A target's manifest record as the catalog keeps it: plain JSON, and the artifacts in
it as rows retention can find (image files; cloud images per region with snapshots)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from imgpipe.core.artifact import AMI, IMAGE_FILE


@dataclass(frozen=True)
class ArtifactRow:
    kind: str
    ref: str
    region: str | None
    data: dict[str, Any]


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON values only (paths and times as strings); anything else is a bug
    in the caller, raised here rather than half-written to the database."""
    return json.loads(json.dumps(record, default=_plain_value))  # type: ignore[no-any-return]


def artifacts_in(record: dict[str, Any]) -> list[ArtifactRow]:
    """`files` ({name, size, sha256}) are image files; every `images` list
    ({region, image_id, snapshot_ids}) in the builder's `data` or a publication's `data`
    is a cloud image per region, of the `kind` that dict names (AMI if none)."""
    rows = [
        ArtifactRow(IMAGE_FILE, str(f.get("path") or f["name"]), None, dict(f))
        for f in record.get("files") or []
    ]
    rows += _images(record.get("data") or {}, made_by=None)
    for publication in record.get("published") or []:
        rows += _images(publication.get("data") or {}, made_by=publication.get("publisher"))
    return rows


def _images(data: dict[str, Any], made_by: str | None) -> list[ArtifactRow]:
    kind = str(data.get("kind") or AMI)
    extra: dict[str, Any] = {"publisher": made_by} if made_by else {}
    if data.get("profile"):  # the AWS profile it was made with: promote, revoke and prune use it
        extra["profile"] = data["profile"]
    if data.get("ssm_parameter"):  # a publisher's parameter: the `latest` channel's pointer
        extra["ssm_parameter"] = data["ssm_parameter"]
    return [
        ArtifactRow(
            kind,
            str(image["image_id"]),
            image.get("region"),
            {"snapshot_ids": list(image.get("snapshot_ids") or []), **extra},
        )
        for image in data.get("images") or []
    ]


def _plain_value(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"the catalog records JSON values only, not {type(value).__name__}: {value!r}")
