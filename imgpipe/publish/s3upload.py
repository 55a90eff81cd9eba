"""Upload a disk image to S3 as a multipart upload with progress, and remove it again
(object and any unfinished multipart upload) whatever happened.

The parts are sent by imgpipe itself rather than boto3's transfer manager, so that Ctrl-C or
SIGTERM (`cancel`) stops the upload between parts and aborts it, whichever thread waits."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from imgpipe.aws.errors import is_not_found
from imgpipe.errors import Interrupted

MiB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit per multipart upload
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
    cancel: threading.Event | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Upload `path` to s3://bucket/key, tagged `tags`, in parts of `part_size` bytes (S3's
    minimum is 5 MiB; larger if the file would need over 10,000 parts) sent `max_concurrency`
    at a time. Once `cancel` is set no part starts and Interrupted is raised; on that or any
    failure the multipart upload is aborted (S3 bills for the parts of an unfinished one).
    `progress(sent, total)` runs in worker threads."""
    total = path.stat().st_size
    part_size = max(part_size, -(-total // MAX_PARTS))
    sent = 0
    lock = threading.Lock()
    args = {"Bucket": bucket, "Key": key}
    if tags:
        args["Tagging"] = urllib.parse.urlencode(tags)
    upload_id = s3.create_multipart_upload(**args)["UploadId"]

    def send(number: int) -> dict[str, Any]:
        nonlocal sent
        if cancel is not None and cancel.is_set():
            raise Interrupted("interrupted")
        with open(path, "rb") as fh:
            fh.seek((number - 1) * part_size)
            body = fh.read(part_size)
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        with lock:
            sent += len(body)
            done = sent
        if progress is not None:
            progress(done, total)
        return {"ETag": answer["ETag"], "PartNumber": number}

    count = max(1, -(-total // part_size))  # an empty file is one empty part
    try:
        with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="s3-part") as pool:
            futures = [pool.submit(send, number) for number in range(1, count + 1)]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
                parts = [future.result() for future in futures]
            except BaseException:
                for future in futures:  # parts not started never start; running ones finish
                    future.cancel()
                raise
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        _abort(s3, bucket, key, upload_id)
        raise


def _abort(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:
        if not is_not_found(exc):
            raise


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
            _abort(s3, bucket, key, upload["UploadId"])
    s3.delete_object(Bucket=bucket, Key=key)  # idempotent: no error for a missing key


def remove_upload(region: str, bucket: str, key: str, profile: str | None = None) -> None:
    """Journal cleaner: remove an uploaded image left by a killed run."""
    from imgpipe.aws.session import client_for

    delete_upload(client_for("s3", region, profile), bucket, key)
