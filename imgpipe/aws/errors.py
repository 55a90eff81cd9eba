"""Reading AWS failures without importing botocore: the error code is what a user
searches for, so every imgpipe error about AWS names it."""

from __future__ import annotations


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
