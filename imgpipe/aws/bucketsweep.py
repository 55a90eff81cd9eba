"""Find aws-import's leftovers in an S3 bucket you name (`imgpipe gc --aws-bucket`): only a
journal names the bucket, so after a kill -9 on a runner that is gone, nothing else can
find them. Objects under the import prefix carry `imgpipe:build-id`; an upload that never
completed has no tags yet, but its key holds the build id (`<spec>-<target>-<build-id>-…`)."""

from __future__ import annotations

import re
from typing import Any

from imgpipe.aws.sweep import Leftover, stale_check, tagged_build_id

_BUILD_ID_IN_KEY = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
DEFAULT_PREFIX = "imgpipe-import/"


def parse_bucket(value: str) -> tuple[str, str]:
    """`bucket` or `bucket/prefix/` -> (bucket, prefix); the prefix defaults to aws-import's."""
    bucket, _, prefix = value.partition("/")
    return bucket, prefix or DEFAULT_PREFIX


def find_bucket_leftovers(
    s3: Any, *, bucket: str, prefix: str, older_than: float, skip_builds: set[str], now: float | None = None
) -> list[Leftover]:
    stale = stale_check(older_than, skip_builds, now)
    found: list[Leftover] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            build_id = tagged_build_id(s3.get_object_tagging(Bucket=bucket, Key=obj["Key"])["TagSet"])
            if stale(build_id):
                found.append(Leftover("s3-object", f"s3://{bucket}/{obj['Key']}", str(build_id)))
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            match = _BUILD_ID_IN_KEY.search(upload["Key"])
            if match and stale(match.group()):
                where = f"s3://{bucket}/{upload['Key']}?uploadId={upload['UploadId']}"
                found.append(Leftover("s3-upload", where, match.group()))
    return found


def remove_bucket_leftovers(s3: Any, leftovers: list[Leftover]) -> None:
    for leftover in leftovers:
        bucket, _, rest = leftover.resource_id.removeprefix("s3://").partition("/")
        key, _, upload_id = rest.partition("?uploadId=")
        if leftover.kind == "s3-upload":
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
