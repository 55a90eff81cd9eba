"""AMIs and their snapshots, as the builder and the publishers need them: find the
snapshots behind an image, tag both, wait for `available`, and remove both."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from imgpipe.aws.errors import AwsWaitError, error_code, error_message, is_not_found

BAD_IMAGE_STATES = {"failed", "error", "invalid", "deregistered", "disabled"}


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def describe_image(ec2: Any, image_id: str) -> dict[str, Any]:
    """The image's description; raises AwsWaitError(`InvalidAMIID.NotFound`) if it is gone."""
    images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    if not images:
        raise AwsWaitError(f"image {image_id} not found", "InvalidAMIID.NotFound")
    return images[0]  # type: ignore[no-any-return]


def snapshot_ids(image: Mapping[str, Any]) -> list[str]:
    """The EBS snapshots behind an image, in block device order."""
    return [
        bdm["Ebs"]["SnapshotId"]
        for bdm in image.get("BlockDeviceMappings", [])
        if bdm.get("Ebs", {}).get("SnapshotId")
    ]


def tag_image(ec2: Any, image_id: str, tags: Mapping[str, str]) -> list[str]:
    """Tag the image and each of its snapshots in one call; return the snapshot ids."""
    snapshots = snapshot_ids(describe_image(ec2, image_id))
    if tags:
        ec2.create_tags(Resources=[image_id, *snapshots], Tags=tag_list(tags))
    return snapshots


def wait_for_images(
    pending: Mapping[str, tuple[Any, str]],
    *,
    timeout: float,
    poll_interval: float,
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[str, str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Wait until every image is `available`: `pending` maps a label (the region) to
    (ec2 client, image id). Returns the final descriptions by label.

    Polls describe_images itself rather than botocore's waiter so the deadline covers all
    regions at once and a `failed` state stops the wait at the first poll that sees it."""
    deadline = time.monotonic() + timeout
    waiting = dict(pending)
    done: dict[str, dict[str, Any]] = {}
    while True:
        for label, (ec2, image_id) in list(waiting.items()):
            try:
                image = describe_image(ec2, image_id)
            except AwsWaitError as exc:
                exc.where = label
                raise
            except Exception as exc:
                raise AwsWaitError(error_message(exc), error_code(exc), label) from exc
            state = image.get("State", "pending")
            if on_poll:
                on_poll(label, state)
            if state == "available":
                done[label] = image
                del waiting[label]
            elif state in BAD_IMAGE_STATES:
                reason = image.get("StateReason", {})
                raise AwsWaitError(
                    f"image {image_id} in {label} is {state}: {reason.get('Message', 'no reason given')}",
                    reason.get("Code") or f"Image{state.capitalize()}",
                    label,
                )
        if not waiting:
            return done
        if time.monotonic() >= deadline:
            labels = ", ".join(f"{image_id} in {label}" for label, (_, image_id) in waiting.items())
            raise AwsWaitError(
                f"images not available after {timeout:g} s: {labels}", "Timeout", ",".join(waiting)
            )
        sleep(poll_interval)


def delete_snapshots(ec2: Any, snapshots: Iterable[str]) -> None:
    for snapshot in snapshots:
        try:
            ec2.delete_snapshot(SnapshotId=snapshot)
        except Exception as exc:
            if not is_not_found(exc):
                raise


def delete_image(ec2: Any, image_id: str, known_snapshots: Iterable[str] = ()) -> None:
    """Deregister an image and delete its snapshots, idempotently.

    Snapshots are deleted one by one after the deregistration: DeleteAssociatedSnapshots is
    newer than some endpoints (and moto accepts it without deleting anything)."""
    snapshots = list(known_snapshots)
    try:
        snapshots += [s for s in snapshot_ids(describe_image(ec2, image_id)) if s not in snapshots]
    except Exception as exc:
        if not (is_not_found(exc) or error_code(exc) == "InvalidAMIID.NotFound"):
            raise
    try:
        ec2.deregister_image(ImageId=image_id)
    except Exception as exc:
        if not is_not_found(exc):
            raise
    delete_snapshots(ec2, snapshots)


def remove_image(region: str, image_id: str, snapshots: list[str], profile: str | None = None) -> None:
    """Journal cleaner: remove an image left by a killed run (`imgpipe gc`)."""
    from imgpipe.aws.session import client_for

    delete_image(client_for("ec2", region, profile), image_id, snapshots)


def remove_snapshot(region: str, snapshot_id: str, profile: str | None = None) -> None:
    """Journal cleaner: delete a snapshot left by a killed run."""
    from imgpipe.aws.session import client_for

    delete_snapshots(client_for("ec2", region, profile), [snapshot_id])


def images_named(ec2: Any, name: str, build_id: str | None) -> list[dict[str, Any]]:
    """This build's images called `name`: the name alone is not enough, since an `ami_name`
    without {build_id} names every build's image alike and the one found may be published.
    Without `build_id` (journals from before it was recorded), only images still `building`."""
    from imgpipe.aws.buildres import BUILD_TAG, STATE_TAG  # buildres imports this module

    tag, value = (BUILD_TAG, build_id) if build_id else (STATE_TAG, "building")
    filters = [{"Name": "name", "Values": [name]}, {"Name": f"tag:{tag}", "Values": [value]}]
    return ec2.describe_images(Owners=["self"], Filters=filters)["Images"]  # type: ignore[no-any-return]


def remove_images_named(
    region: str, name: str, build_id: str | None = None, profile: str | None = None
) -> None:
    """Journal cleaner for an AMI being created: recorded by name (and the build's tag, which
    CreateImage applies atomically) before CreateImage answers, so a kill -9 in between
    still leaves something `imgpipe gc` can find, and nothing else of that name is touched."""
    from imgpipe.aws.session import client_for

    ec2 = client_for("ec2", region, profile)
    for image in images_named(ec2, name, build_id):
        delete_image(ec2, image["ImageId"], snapshot_ids(image))


def missing_images(images: Iterable[Mapping[str, Any]], profile: str | None = None) -> set[str]:
    """Which of these AMIs ({region, image_id}) no longer exist (or are no longer available)."""
    from imgpipe.aws.session import client_for

    by_region: dict[str, list[str]] = {}
    for image in images:
        by_region.setdefault(str(image["region"]), []).append(str(image["image_id"]))
    missing: set[str] = set()
    for region, ids in by_region.items():
        found = client_for("ec2", region, profile).describe_images(
            Filters=[{"Name": "image-id", "Values": ids}]
        )["Images"]
        available = {i["ImageId"] for i in found if i.get("State") == "available"}
        missing |= set(ids) - available
    return missing
