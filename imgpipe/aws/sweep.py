"""Find an EC2 region's leftover build resources by their tags, for when the journal that
names them is gone (another machine, a wiped CI runner): instances, security groups and
key pairs tagged `imgpipe:build-id`, AMIs and snapshots still tagged `imgpipe:state:
building`, and the aws-import tasks of a build: still running (cancelled), or completed
into a snapshot nobody tagged before the build died. Published AMIs and snapshots are
products, retired by policy, never by gc. (An aws-import's S3 object is not found here:
only its journal entry names the bucket; `bucketsweep` looks in a bucket you name.)

A build's age comes from its id (it starts with the UTC start time), so a security
group, which has no creation time of its own, is judged like the rest of its build."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgpipe.aws import buildres, importtasks
from imgpipe.aws import images as amis
from imgpipe.core.buildid import build_started


@dataclass(frozen=True)
class Leftover:
    kind: str  # instance, security-group, key-pair, image, snapshot, import-task
    resource_id: str
    build_id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.resource_id} (build {self.build_id})"


def tagged_build_id(tags: list[dict[str, str]] | None) -> str | None:
    return next((t["Value"] for t in tags or [] if t["Key"] == buildres.BUILD_TAG), None)


def stale_check(
    older_than: float, skip_builds: set[str], now: float | None = None
) -> Callable[[str | None], bool]:
    """Whether a build (by id) started more than `older_than` seconds ago and is not one
    still running here; an id that is not imgpipe's is never stale."""
    now = time.time() if now is None else now

    def stale(build_id: str | None) -> bool:
        started = build_started(build_id) if build_id else None
        return started is not None and build_id not in skip_builds and now - started >= older_than

    return stale


def find_leftovers(
    ec2: Any, *, older_than: float, skip_builds: set[str], now: float | None = None
) -> list[Leftover]:
    """Temporary resources of builds that started more than `older_than` seconds ago and
    are not in `skip_builds` (builds still running here). Removal order: instances first."""
    tag_filter = [{"Name": "tag-key", "Values": [buildres.BUILD_TAG]}]
    stale = stale_check(older_than, skip_builds, now)

    found: list[Leftover] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=tag_filter):
        for instance in (i for r in page["Reservations"] for i in r["Instances"]):
            build_id = tagged_build_id(instance.get("Tags"))
            if instance["State"]["Name"] not in buildres.GONE_STATES and stale(build_id):
                found.append(Leftover("instance", instance["InstanceId"], str(build_id)))
    for page in ec2.get_paginator("describe_security_groups").paginate(Filters=tag_filter):
        for group in page["SecurityGroups"]:
            build_id = tagged_build_id(group.get("Tags"))
            if stale(build_id):
                found.append(Leftover("security-group", group["GroupId"], str(build_id)))
    for pair in ec2.describe_key_pairs(Filters=tag_filter)["KeyPairs"]:
        build_id = tagged_build_id(pair.get("Tags"))
        if stale(build_id):
            found.append(Leftover("key-pair", pair["KeyName"], str(build_id)))
    building = [{"Name": f"tag:{buildres.STATE_TAG}", "Values": ["building"]}]
    for image in ec2.describe_images(Owners=["self"], Filters=building)["Images"]:
        build_id = tagged_build_id(image.get("Tags"))
        if stale(build_id):
            found.append(Leftover("image", image["ImageId"], str(build_id)))
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=building):
        for snapshot in page["Snapshots"]:
            build_id = tagged_build_id(snapshot.get("Tags"))
            if stale(build_id):
                found.append(Leftover("snapshot", snapshot["SnapshotId"], str(build_id)))
    for build_id, task in importtasks.build_import_tasks(ec2):
        if not stale(build_id):
            continue
        if task.get("SnapshotTaskDetail", {}).get("Status") in importtasks.RUNNING:
            found.append(Leftover("import-task", task["ImportTaskId"], build_id))
        elif (snapshot_id := importtasks.unpublished_snapshot(ec2, task)) and not any(
            x.resource_id == snapshot_id for x in found
        ):
            found.append(Leftover("snapshot", snapshot_id, build_id))
    return found


def remove_leftovers(ec2: Any, leftovers: list[Leftover], *, poll_interval: float = 5) -> None:
    """Instances first (their groups cannot go before they are terminated), then the rest in
    the order found (images before their snapshots)."""
    instances = [x.resource_id for x in leftovers if x.kind == "instance"]
    buildres.terminate_instances(ec2, instances, poll_interval=poll_interval)
    for leftover in leftovers:
        if leftover.kind == "security-group":
            buildres.delete_security_group(ec2, leftover.resource_id)
        elif leftover.kind == "key-pair":
            buildres.delete_key_pair(ec2, leftover.resource_id)
        elif leftover.kind == "image":
            amis.delete_image(ec2, leftover.resource_id)
        elif leftover.kind == "snapshot":
            amis.delete_snapshots(ec2, [leftover.resource_id])
        elif leftover.kind == "import-task":
            importtasks.remove_import_task(ec2, leftover.resource_id)
