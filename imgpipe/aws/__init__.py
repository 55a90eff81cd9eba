"""AWS plumbing shared by the EC2 builder and the AWS publishers.

Nothing here imports boto3 at import time: the CLI starts without it."""

from imgpipe.aws.errors import AwsWaitError, error_code
from imgpipe.aws.session import AwsSession, AwsSettings, RetryMode, RetrySettings

__all__ = ["AwsSession", "AwsSettings", "AwsWaitError", "RetryMode", "RetrySettings", "error_code"]
