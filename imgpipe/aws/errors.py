"""Reading AWS failures without importing botocore: the error code is what a user
searches for, so every imgpipe error about AWS names it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from imgpipe.errors import BuildError, ImgpipeError, PublishError


class AwsWaitError(Exception):
    """A resource reached a bad state, or did not become ready before the deadline."""

    def __init__(self, message: str, code: str, where: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.where = where  # the region (or other label) it happened in, when known


def error_code(exc: BaseException) -> str:
    """`InvalidAMIID.NotFound` for a ClientError, `Timeout` for a wait, else the class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    if isinstance(exc, AwsWaitError):
        return exc.code
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(exc)


def is_not_found(exc: BaseException) -> bool:
    """True for the codes AWS uses when a resource is already gone (cleanup is then done)."""
    code = error_code(exc)
    return code.endswith((".NotFound", ".Malformed")) or code in {
        "InvalidAMIID.Unavailable",
        "NoSuchKey",
        "NoSuchUpload",
        "ParameterNotFound",
        "404",
    }


@contextmanager
def step(name: str, region: str, *, build: bool = False) -> Iterator[None]:
    """Turn any failure inside into PublishError(step=name, region=region, code=...), or a
    BuildError for a builder's step (`build`). ImgpipeErrors and interrupts pass through."""
    try:
        yield
    except ImgpipeError:
        raise
    except Exception as exc:
        code = error_code(exc)
        region = getattr(exc, "where", "") or region
        what = "build" if build else "publish"
        message = f"{what} step {name!r} failed in {region}: {code}: {error_message(exc)}"
        if build:
            raise BuildError(message, hint=_HINTS.get(code)) from exc
        raise PublishError(message, hint=_HINTS.get(code), step=name, region=region, code=code) from exc


_HINTS = {
    "UnauthorizedOperation": "the AWS identity lacks a permission: see the IAM policy in the README",
    "AccessDenied": "the AWS identity lacks a permission: see the IAM policy in the README",
    "AuthFailure": "check the AWS credentials (profile, environment, instance role)",
    "NoCredentialsError": "configure AWS credentials: a profile (aws.profile / AWS_PROFILE), "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role",
    "Timeout": "raise the wait's timeout setting, or look at the resource's state in the EC2 console",
    "InvalidAMIID.NotFound": "check source_ami and the region; AMIs are regional",
    "InsufficientInstanceCapacity": "try another instance_type or subnet (availability zone)",
    "RequestLimitExceeded": "AWS kept throttling: raise retry.max_attempts or use retry.mode: adaptive",
}


def fail_after_rollback(exc: BaseException, failures: list[str], step_name: str) -> BaseException:
    """The exception to raise once a rollback ran: a PublishError that also lists what the
    rollback could not remove, or the interrupt itself (the CLI turns it into exit 130)."""
    left = "" if not failures else "\nrollback could not undo:\n  " + "\n  ".join(failures)
    if isinstance(exc, ImgpipeError):
        exc.message += left
        exc.args = (exc.message,)
        return exc
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        if failures:
            exc.add_note(left.strip())
        return exc
    code = error_code(exc)
    return PublishError(
        f"publish failed during {step_name}: {code}: {error_message(exc)}{left}", step=step_name, code=code
    )
