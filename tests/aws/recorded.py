"""A build of target `ec2` as the catalog records it, with AMIs that exist in moto: the
fixture the channel, revocation and retention tests start from."""

from __future__ import annotations

from typing import Any

from imgpipe.catalog import Catalog


def record_ami_build(
    catalog: Catalog,
    build_id: str,
    images: dict[str, tuple[str, list[str]]],
    *,
    spec: str = "web",
    spec_path: str | None = None,
    status: str = "succeeded",
    parent: tuple[str, str] | None = None,
    **record: Any,
) -> dict[str, str]:
    """Record `build_id` of `spec` with `images` ({region: (AMI, snapshots)}) as its AMIs;
    `parent`: (build id, reference) it was made from; `record`: more of its target record.
    Returns its AMI per region."""
    parents = {"ec2": (parent[0], "ec2", parent[1])} if parent else None
    catalog.start_build(
        build_id,
        spec,
        spec_path or f"/specs/{spec}.yml",
        ["ec2"],
        imgpipe_version="0",
        ansible_core="0",
        parents=parents,
    )
    catalog.finish_target(
        build_id,
        "ec2",
        status=status,
        fingerprint=None,
        fingerprint_parts={},
        publish_fingerprint=None,
        record={
            "artifact_id": ",".join(f"{r}:{ami}" for r, (ami, _) in images.items()),
            "data": {
                "images": [{"region": r, "image_id": a, "snapshot_ids": s} for r, (a, s) in images.items()]
            },
            "channels": {"ssm_parameter": "/images/{name}/{channel}"},
            **record,
        },
    )
    catalog.finish_build(build_id, status)
    return {region: ami for region, (ami, _) in images.items()}
