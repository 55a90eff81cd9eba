"""Find an EC2 region's leftover build resources by their tags, for when the journal that
names them is gone (another machine, a wiped CI runner): instances, security groups and
key pairs tagged `imgpipe:build-id`, and AMIs still tagged `imgpipe:state: building`.
Published AMIs are products, retired by policy, never by gc.

A build's age comes from its id (it starts with the UTC start time), so a security
group, which has no creation time of its own, is judged like the rest of its build."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

from imgpipe.aws import buildres
from imgpipe.aws import images as amis


@dataclass(frozen=True)
class Leftover:
    kind: str  # instance, security-group, key-pair
    resource_id: str
    build_id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.resource_id} (build {self.build_id})"


def build_started(build_id: str) -> float | None:
    """Seconds since the epoch from `20261127T053122Z-dc0ed0`; None if not an imgpipe id."""
    try:
        return float(calendar.timegm(time.strptime(build_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def _build_id(tags: list[dict[str, str]] | None) -> str | None:
    return next((t["Value"] for t in tags or [] if t["Key"] == buildres.BUILD_TAG), None)


def find_leftovers(
    ec2: Any, *, older_than: float, skip_builds: set[str], now: float | None = None
) -> list[Leftover]:
    """Temporary resources of builds that started more than `older_than` seconds ago and
    are not in `skip_builds` (builds still running here). Removal order: instances first."""
    now = time.time() if now is None else now
    tag_filter = [{"Name": "tag-key", "Values": [buildres.BUILD_TAG]}]

    def stale(build_id: str | None) -> bool:
        started = build_started(build_id) if build_id else None
        return started is not None and build_id not in skip_builds and now - started >= older_than

    found: list[Leftover] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=tag_filter):
        for instance in (i for r in page["Reservations"] for i in r["Instances"]):
            build_id = _build_id(instance.get("Tags"))
            if instance["State"]["Name"] not in buildres.GONE_STATES and stale(build_id):
                found.append(Leftover("instance", instance["InstanceId"], str(build_id)))
    for page in ec2.get_paginator("describe_security_groups").paginate(Filters=tag_filter):
        for group in page["SecurityGroups"]:
            build_id = _build_id(group.get("Tags"))
            if stale(build_id):
                found.append(Leftover("security-group", group["GroupId"], str(build_id)))
    for pair in ec2.describe_key_pairs(Filters=tag_filter)["KeyPairs"]:
        build_id = _build_id(pair.get("Tags"))
        if stale(build_id):
            found.append(Leftover("key-pair", pair["KeyName"], str(build_id)))
    building = [{"Name": f"tag:{buildres.STATE_TAG}", "Values": ["building"]}]
    for image in ec2.describe_images(Owners=["self"], Filters=building)["Images"]:
        build_id = _build_id(image.get("Tags"))
        if stale(build_id):
            found.append(Leftover("image", image["ImageId"], str(build_id)))
    return found


def remove_leftovers(ec2: Any, leftovers: list[Leftover], *, poll_interval: float = 5) -> None:
    """Instances first (their groups cannot go before they are terminated), then groups, then keys."""
    instances = [x.resource_id for x in leftovers if x.kind == "instance"]
    buildres.terminate_instances(ec2, instances, poll_interval=poll_interval)
    for leftover in leftovers:
        if leftover.kind == "security-group":
            buildres.delete_security_group(ec2, leftover.resource_id)
        elif leftover.kind == "key-pair":
            buildres.delete_key_pair(ec2, leftover.resource_id)
        elif leftover.kind == "image":
            amis.delete_image(ec2, leftover.resource_id)
