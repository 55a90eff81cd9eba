"""Marking a revoked build's AMI in EC2: two tags saying it is revoked and why, and an EC2
deprecation time, so the console, `describe-images` and other accounts see it too.

Deprecation is best-effort: an endpoint without EnableImageDeprecation (moto 5.2 answers
it with an HTTP 500) leaves the AMI tagged, and the caller says so; running the revoke
again tries once more. An AMI that is gone already is not an error."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from imgpipe.aws.errors import AwsWaitError, error_code, error_message, is_not_found

REVOKED_TAG = "imgpipe:revoked"
REASON_TAG = "imgpipe:revoked-reason"
TAG_VALUE_MAX = 256  # EC2's limit on a tag value, in Unicode characters
# EnableImageDeprecation wants a time in the future and keeps minutes only: a retried
# call must still be in the future when AWS reads it, hence the margin
_MARGIN = timedelta(seconds=15)
_DEPRECATION_ATTEMPTS = 3  # an endpoint that lacks the call answers 500: don't back off for a minute


@dataclass(frozen=True)
class AmiMark:
    """How marking one AMI went: `gone`, or tagged with a deprecation time (None when the
    endpoint refused to set one: `deprecation_error` says why)."""

    image_id: str
    region: str
    gone: bool = False
    deprecated_at: datetime | None = None
    deprecation_error: str | None = None
    already_deprecated: bool = False  # it had an earlier deprecation time: kept


def deprecation_time(now: datetime | None = None) -> datetime:
    """`now` (plus a small margin) rounded up to the next whole minute, in UTC."""
    moment = (now or datetime.now(UTC)) + _MARGIN
    minutes = math.ceil(moment.timestamp() / 60)
    return datetime.fromtimestamp(minutes * 60, UTC)


def revoked_tags(reason: str) -> list[dict[str, str]]:
    return [
        {"Key": REVOKED_TAG, "Value": "true"},
        {"Key": REASON_TAG, "Value": reason[:TAG_VALUE_MAX]},
    ]


def mark_revoked(session: Any, region: str, image_id: str, reason: str, deprecate_at: datetime) -> AmiMark:
    """Tag `image_id` in `region` revoked (with `reason`) and deprecate it at
    `deprecate_at` unless it has an earlier deprecation time. `session` is an AwsSession.
    Raises on any failure but a missing AMI and a refused deprecation."""
    ec2 = session.client("ec2", region)
    try:
        found = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    except Exception as exc:
        if is_not_found(exc):
            return AmiMark(image_id, region, gone=True)
        raise
    image = next((i for i in found if i.get("ImageId") == image_id), None)
    if image is None or image.get("State") == "deregistered":
        return AmiMark(image_id, region, gone=True)
    try:
        ec2.create_tags(Resources=[image_id], Tags=revoked_tags(reason))
    except Exception as exc:
        if is_not_found(exc):  # deregistered between the two calls
            return AmiMark(image_id, region, gone=True)
        raise
    earlier = _parse_time(image.get("DeprecationTime"))
    if earlier is not None and earlier <= deprecate_at:
        return AmiMark(image_id, region, deprecated_at=earlier, already_deprecated=True)
    try:
        _deprecation_client(session, region).enable_image_deprecation(
            ImageId=image_id, DeprecateAt=deprecate_at
        )
    except Exception as exc:  # noqa: BLE001 - tagged all the same; the caller reports it
        if is_not_found(exc):
            return AmiMark(image_id, region, gone=True)
        return AmiMark(image_id, region, deprecation_error=_short(exc))
    return AmiMark(image_id, region, deprecated_at=deprecate_at)


def _deprecation_client(session: Any, region: str) -> Any:
    """An EC2 client of the same boto3 session (so its event hooks apply) that gives up
    after a few attempts."""
    from botocore.config import Config

    retry = session.settings.retry
    attempts = min(_DEPRECATION_ATTEMPTS, retry.max_attempts)
    config = session.client_config().merge(
        Config(retries={"mode": retry.mode.value, "total_max_attempts": attempts})
    )
    return session.boto.client("ec2", region_name=region, config=config)


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _short(exc: BaseException) -> str:
    if isinstance(exc, AwsWaitError):
        return f"{exc.code}: {exc}"
    message = error_message(exc).strip().splitlines()
    text = message[0] if message else type(exc).__name__
    return f"{error_code(exc)}: {text[:160]}"
