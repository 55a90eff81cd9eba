"""What retention asks EC2, and what it changes there. Reads: which AMIs are in use (an
instance in any state but terminated, any version of any launch template), which AMIs or
snapshots are tagged `imgpipe:keep=true`, which AMIs use a snapshot. Writes: deprecate an
AMI, reset its launch permissions and deregister it, delete a snapshot no AMI uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from imgpipe.aws.errors import error_code, is_not_found
from imgpipe.aws.images import delete_snapshots, snapshot_ids
from imgpipe.retention.policy import KEEP_TAG

# not terminated (shutting-down ends in terminated too): a stopped instance starts again
# from the AMI's snapshots only while they exist
IN_USE_STATES = ["pending", "running", "stopping", "stopped"]

ClientFor = Callable[[str, str | None, str], Any]  # (service, profile, region) -> a boto3 client


@dataclass
class Ec2Facts:
    in_use: dict[str, str] = field(default_factory=dict)  # image id -> what uses it
    keep_tagged: dict[str, str] = field(default_factory=dict)  # image or snapshot id -> tag
    # (profile, region) -> image id -> its snapshots: every image of ours, to spot sharing
    images: dict[tuple[str | None, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def snapshot_users(self, profile: str | None, region: str, snapshot: str) -> set[str]:
        return {i for i, snaps in self.images.get((profile, region), {}).items() if snapshot in snaps}


def gather(client_for: ClientFor, places: Iterable[tuple[str | None, str]]) -> Ec2Facts:
    """Ask each (profile, region) what uses which AMI and what is tagged to be kept."""
    facts = Ec2Facts()
    for profile, region in sorted(set(places), key=lambda p: (p[0] or "", p[1])):
        ec2 = client_for("ec2", profile, region)
        _instances(ec2, region, facts)
        _launch_templates(
            ec2, region, facts, lambda name, r=region, p=profile: _ssm_value(client_for, p, r, name)
        )
        tag_filter = [{"Name": f"tag:{KEEP_TAG}", "Values": ["true"]}]
        for image in _pages(ec2, "describe_images", "Images", Owners=["self"]):
            facts.images.setdefault((profile, region), {})[image["ImageId"]] = tuple(snapshot_ids(image))
        for image in _pages(ec2, "describe_images", "Images", Owners=["self"], Filters=tag_filter):
            facts.keep_tagged[image["ImageId"]] = f"{KEEP_TAG}=true"
        for snap in _pages(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=tag_filter):
            facts.keep_tagged[snap["SnapshotId"]] = f"{KEEP_TAG}=true"
    return facts


def _instances(ec2: Any, region: str, facts: Ec2Facts) -> None:
    state = [{"Name": "instance-state-name", "Values": IN_USE_STATES}]
    for reservation in _pages(ec2, "describe_instances", "Reservations", Filters=state):
        for instance in reservation.get("Instances", []):
            name = instance["State"]["Name"]
            facts.in_use.setdefault(
                instance["ImageId"], f"instance {instance['InstanceId']} ({name}) in {region}"
            )


def _launch_templates(ec2: Any, region: str, facts: Ec2Facts, ssm: Callable[[str], str | None]) -> None:
    for template in _pages(ec2, "describe_launch_templates", "LaunchTemplates"):
        ident = template["LaunchTemplateId"]
        for version in _pages(
            ec2, "describe_launch_template_versions", "LaunchTemplateVersions", LaunchTemplateId=ident
        ):
            image = (version.get("LaunchTemplateData") or {}).get("ImageId")
            if isinstance(image, str) and image.startswith("resolve:ssm:"):
                image = ssm(image.removeprefix("resolve:ssm:"))
            if image:
                what = f"launch template {template.get('LaunchTemplateName', ident)} version "
                facts.in_use.setdefault(image, f"{what}{version.get('VersionNumber')} in {region}")


def _ssm_value(client_for: ClientFor, profile: str | None, region: str, name: str) -> str | None:
    """A launch template's `resolve:ssm:` image: what the parameter holds now (a channel's
    parameter points at a build that is kept anyway; this catches any other)."""
    try:
        return str(
            client_for("ssm", profile, region).get_parameter(Name=name.split(":")[0])["Parameter"]["Value"]
        )
    except Exception:  # noqa: BLE001 - a parameter we can't read names no image of ours we know
        return None


def _pages(client: Any, operation: str, key: str, **args: Any) -> list[dict[str, Any]]:
    if client.can_paginate(operation):
        return [
            item for page in client.get_paginator(operation).paginate(**args) for item in page.get(key, [])
        ]
    return list(getattr(client, operation)(**args).get(key, []))


def deprecate(ec2: Any, image_id: str, now: datetime) -> None:
    """Give the AMI a deprecation time: EC2 wants one in the future, rounded to the minute."""
    at = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)


def deregister(ec2: Any, image_id: str) -> None:
    """Stop sharing the AMI (every launch permission, public included, removed: what
    ResetImageAttribute does, spelled so that every endpoint answers it), then deregister
    it; an AMI already gone is done."""
    if not ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}]).get("Images"):
        return  # gone already (a prune killed after this step, or by hand)
    try:
        perms = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
        if perms.get("LaunchPermissions"):
            ec2.modify_image_attribute(
                ImageId=image_id, LaunchPermission={"Remove": perms["LaunchPermissions"]}
            )
        ec2.deregister_image(ImageId=image_id)
    except Exception as exc:
        if not (
            is_not_found(exc) or error_code(exc) in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable")
        ):
            raise


def images_using(ec2: Any, snapshot: str) -> list[str]:
    """Our AMIs (any still registered) that a snapshot is behind."""
    return sorted(
        i["ImageId"]
        for i in _pages(ec2, "describe_images", "Images", Owners=["self"])
        if snapshot in snapshot_ids(i)
    )


def delete_snapshot_unless_used(ec2: Any, snapshot: str) -> list[str]:
    """Delete the snapshot unless an AMI still uses it; returns those AMIs (none: deleted)."""
    users = images_using(ec2, snapshot)
    if not users:
        delete_snapshots(ec2, [snapshot])
    return users
