"""VM Import snapshot tasks a build started: cancel one that still runs, and remove the
snapshot one already produced. An import goes on in AWS after imgpipe dies, so removing
a task means both. Everything here goes by task id (the build's own), and a snapshot that
is tagged `published` is never removed: the rollback, the journal (`imgpipe gc`) and the
region sweep (`imgpipe gc --aws-region`) all call `remove_import_task`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imgpipe.aws.buildres import BUILD_TAG, STATE_TAG
from imgpipe.aws.errors import error_code, is_not_found
from imgpipe.aws.images import delete_snapshots

RUNNING = {"active", "pending"}  # statuses in which CancelImportTask stops the import
GONE_TASK_CODES = {"InvalidConversionTaskId", "InvalidConversionTaskId.Malformed", "IncorrectState"}


def cancel_import_task(ec2: Any, task_id: str) -> None:
    """Cancel a running import; a task that already finished, failed or is gone needs nothing."""
    try:
        ec2.cancel_import_task(ImportTaskId=task_id)
    except Exception as exc:
        if error_code(exc) not in GONE_TASK_CODES:
            raise


def describe_import_task(ec2: Any, task_id: str) -> dict[str, Any] | None:
    try:
        tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"]
    except Exception as exc:
        if error_code(exc) in GONE_TASK_CODES or is_not_found(exc):
            return None
        raise
    return tasks[0] if tasks else None


def unpublished_snapshot(ec2: Any, task: dict[str, Any]) -> str | None:
    """The snapshot a completed task produced, if it still exists and is not published."""
    detail = task.get("SnapshotTaskDetail", {})
    snapshot_id = detail.get("SnapshotId")
    if detail.get("Status") != "completed" or not snapshot_id:
        return None
    try:
        found = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise
    tags = {t["Key"]: t["Value"] for snapshot in found for t in snapshot.get("Tags", [])}
    return None if not found or tags.get(STATE_TAG) == "published" else str(snapshot_id)


def remove_import_task(ec2: Any, task_id: str) -> None:
    """Cancel the import, and delete the snapshot it produced if it got that far."""
    cancel_import_task(ec2, task_id)
    task = describe_import_task(ec2, task_id)
    snapshot_id = unpublished_snapshot(ec2, task) if task else None
    if snapshot_id:
        delete_snapshots(ec2, [snapshot_id])


def build_import_tasks(ec2: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(build id, task) for each import task tagged `imgpipe:build-id` that AWS still lists
    (active ones, and those that ended in the last 7 days)."""
    for page in ec2.get_paginator("describe_import_snapshot_tasks").paginate():
        for task in page.get("ImportSnapshotTasks", []):
            build_id = next((t["Value"] for t in task.get("Tags", []) if t["Key"] == BUILD_TAG), None)
            if build_id:
                yield build_id, task


def remove_import(region: str, task_id: str, profile: str | None = None) -> None:
    """Journal cleaner: an import task left by a killed run (`imgpipe gc`)."""
    from imgpipe.aws.session import client_for

    remove_import_task(client_for("ec2", region, profile), task_id)
