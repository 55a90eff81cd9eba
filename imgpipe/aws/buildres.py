"""The temporary EC2 resources of one build (key pair, security group, instance): how
they are tagged, found again and removed. Every cleaner here finds its resource by a name
or tag chosen before the create call, so a journal entry written before the resource
exists still removes it after a kill -9 (`imgpipe gc`), and removing twice is harmless."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from imgpipe.aws.errors import AwsWaitError, error_code, is_not_found, step
from imgpipe.aws.images import tag_list

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSession
    from imgpipe.core.artifact import RegionImage
    from imgpipe.core.undo import Rollback

BUILD_TAG = "imgpipe:build-id"
TARGET_TAG = "imgpipe:target"
# On a builder's AMIs and snapshots: `building` until the whole target succeeded, then
# `published`. A `building` image whose build is long over is a leftover (gc --aws-region).
STATE_TAG = "imgpipe:state"
GONE_STATES = {"terminated"}


def build_tags(build_id: str, target: str, spec: str) -> dict[str, str]:
    """Tags on every resource a build makes: `imgpipe gc` and the console find them by these."""
    return {
        "Name": f"imgpipe-{build_id}-{target}",
        BUILD_TAG: build_id,
        TARGET_TAG: target,
        "imgpipe:spec": spec,
    }


def image_tags(build_id: str, target: str, spec: str, user_tags: Mapping[str, str]) -> dict[str, str]:
    """Tags on what a build makes to publish (uploads, import tasks, snapshots, AMIs): the
    user's, then the build's, which win (gc and the undo find things by them), and
    `imgpipe:state: building` until the target succeeded (`mark_published`).
    Not the build's Name tag: an AMI's would say imgpipe-<build>, not its name."""
    own = build_tags(build_id, target, spec)
    del own["Name"]
    return {**user_tags, **own, STATE_TAG: "building"}


def mark_published(ec2: Any, resources: list[str]) -> None:
    """The target succeeded: its AMIs and snapshots are products now, never swept by gc."""
    ec2.create_tags(Resources=resources, Tags=tag_list({STATE_TAG: "published"}))


def tag_specs(tags: Mapping[str, str], *resource_types: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tag_list(tags)} for kind in resource_types]


def build_filters(build_id: str, target: str) -> list[dict[str, Any]]:
    return [
        {"Name": f"tag:{BUILD_TAG}", "Values": [build_id]},
        {"Name": f"tag:{TARGET_TAG}", "Values": [target]},
    ]


def build_instances(ec2: Any, build_id: str, target: str) -> list[dict[str, Any]]:
    """The build's instances that are not terminated yet."""
    pages = ec2.get_paginator("describe_instances").paginate(Filters=build_filters(build_id, target))
    return [
        instance
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
        if instance["State"]["Name"] not in GONE_STATES
    ]


def wait_for_instance(
    ec2: Any,
    instance_id: str,
    wanted: str,
    *,
    timeout: float,
    poll_interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the instance is in state `wanted`; AwsWaitError if it ends up anywhere
    it cannot come back from (terminated while waiting for running), or on the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance = reservations[0]["Instances"][0]
        state = instance["State"]["Name"]
        if state == wanted:
            return instance  # type: ignore[no-any-return]
        if state in {"terminated", "shutting-down"} and wanted != "terminated":
            reason = instance.get("StateReason", {}).get("Message", "no reason given")
            raise AwsWaitError(f"instance {instance_id} is {state}: {reason}", "InstanceTerminated")
        if time.monotonic() >= deadline:
            raise AwsWaitError(
                f"instance {instance_id} not {wanted} after {timeout:g} s (is {state})", "Timeout"
            )
        sleep(poll_interval)


def terminate_build_instances(
    ec2: Any, build_id: str, target: str, *, timeout: float = 900, poll_interval: float = 5
) -> None:
    """Terminate the build's instances and wait until they are gone (their security
    group cannot be deleted before)."""
    ids = [i["InstanceId"] for i in build_instances(ec2, build_id, target)]
    terminate_instances(ec2, ids, timeout=timeout, poll_interval=poll_interval)


def terminate_instances(ec2: Any, ids: list[str], *, timeout: float = 900, poll_interval: float = 5) -> None:
    if not ids:
        return
    ec2.terminate_instances(InstanceIds=ids)
    for instance_id in ids:
        wait_for_instance(ec2, instance_id, "terminated", timeout=timeout, poll_interval=poll_interval)


def delete_security_group(ec2: Any, group_id: str, *, timeout: float = 300, sleep: Any = time.sleep) -> None:
    """Delete a security group, retrying DependencyViolation: a just-terminated instance's
    network interface holds on to its group for a while after the instance is gone."""
    retrying = Retrying(
        retry=retry_if_exception(lambda exc: error_code(exc) == "DependencyViolation"),
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=1, min=2, max=15),
        sleep=sleep,
        reraise=True,
    )
    try:
        retrying(ec2.delete_security_group, GroupId=group_id)
    except Exception as exc:
        if not is_not_found(exc):
            raise


def groups_named(ec2: Any, vpc_id: str, group_name: str) -> list[str]:
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group_name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    return [g["GroupId"] for g in found]


def delete_key_pair(ec2: Any, key_name: str) -> None:
    try:
        ec2.delete_key_pair(KeyName=key_name)
    except Exception as exc:
        if not is_not_found(exc):
            raise


# Journal cleaners: module-level, JSON arguments only.


def remove_instances(region: str, build_id: str, target: str, profile: str | None = None) -> None:
    from imgpipe.aws.session import client_for

    terminate_build_instances(client_for("ec2", region, profile), build_id, target)


def remove_security_group(region: str, vpc_id: str, group_name: str, profile: str | None = None) -> None:
    from imgpipe.aws.session import client_for

    ec2 = client_for("ec2", region, profile)
    for group_id in groups_named(ec2, vpc_id, group_name):
        delete_security_group(ec2, group_id)


def remove_key_pair(region: str, key_name: str, profile: str | None = None) -> None:
    from imgpipe.aws.session import client_for

    delete_key_pair(client_for("ec2", region, profile), key_name)


def mark_published_on_commit(
    undo: Rollback, session: AwsSession, images: Iterable[RegionImage], *, build: bool = False
) -> None:
    """Once the whole target succeeded, tag what this step made `published`: from then on no
    sweep takes it for a leftover. A failure there fails the target, which then undoes it all."""
    images = tuple(images)

    def mark() -> None:
        for image in images:
            with step("tag", image.region, build=build):
                mark_published(session.client("ec2", image.region), [image.image_id, *image.snapshot_ids])

    undo.on_commit(mark)
