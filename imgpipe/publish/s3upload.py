"""Upload a disk image to S3 as a multipart upload with progress, and remove it again
(object and any unfinished multipart upload) whatever happened."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgpipe.aws.errors import is_not_found

MiB = 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes sent so far, total bytes)


def upload_file(
    s3: Any,
    path: Path,
    bucket: str,
    key: str,
    *,
    part_size: int = 64 * MiB,
    max_concurrency: int = 4,
    progress: Progress | None = None,
) -> None:
    """Upload `path` to s3://bucket/key, in parts of `part_size` bytes (S3's minimum is 5 MiB)
    sent `max_concurrency` at a time. `progress(sent, total)` is called from worker threads."""
    from boto3.s3.transfer import TransferConfig

    total = path.stat().st_size
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=max_concurrency,
        use_threads=max_concurrency > 1,
    )
    sent = 0
    lock = threading.Lock()

    def callback(chunk: int) -> None:
        nonlocal sent
        with lock:
            sent += chunk
            done = sent
        if progress is not None:
            progress(done, total)

    s3.upload_file(str(path), bucket, key, Config=config, Callback=callback)


def delete_upload(s3: Any, bucket: str, key: str) -> None:
    """Remove the object and abort unfinished multipart uploads of that key (an interrupted
    upload leaves parts that S3 bills for and no listing of objects shows)."""
    try:
        uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    except Exception as exc:
        if not is_not_found(exc):
            raise
        uploads = []
    for upload in uploads:
        if upload["Key"] == key:
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
            except Exception as exc:
                if not is_not_found(exc):
                    raise
    s3.delete_object(Bucket=bucket, Key=key)  # idempotent: no error for a missing key


def remove_upload(region: str, bucket: str, key: str, profile: str | None = None) -> None:
    """Journal cleaner: remove an uploaded image left by a killed run."""
    from imgpipe.aws.session import client_for

    delete_upload(client_for("s3", region, profile), bucket, key)
