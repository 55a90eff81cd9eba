"""boto3 clients made one way: one retry policy, credentials and region found the
usual boto3 ways (profile, environment, instance role), `AWS_ENDPOINT_URL` honoured by
boto3 itself. boto3 is imported when the first session is made, never at import."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.errors import SpecError

if TYPE_CHECKING:
    from imgpipe.core.context import TargetContext


class RetryMode(StrEnum):
    """botocore's retry modes (`legacy` is left out on purpose: it ignores throttling quotas)."""

    STANDARD = "standard"
    ADAPTIVE = "adaptive"


class RetrySettings(BaseModel):
    """How hard each AWS API call is retried on throttling and transient errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: RetryMode = Field(
        RetryMode.STANDARD,
        description="botocore retry mode: `standard` (exponential backoff with jitter) or `adaptive` "
        "(standard plus client-side rate limiting when AWS throttles)",
    )
    max_attempts: int = Field(
        10, ge=1, le=50, description="Attempts per API call, the first one included (botocore default: 3)"
    )


class AwsSettings(BaseModel):
    """Where and as whom imgpipe talks to AWS. Unset fields fall back to boto3's own lookup."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str | None = Field(
        None, description="Named profile from the AWS config files; default: AWS_PROFILE or boto3's chain"
    )
    region: str | None = Field(
        None, description="Region to work in; default: AWS_DEFAULT_REGION or the profile's region"
    )
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retry policy of every AWS call")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a TCP connection to AWS")
    read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for an AWS response")


@functools.cache
def _shared_loader() -> Any:
    """One botocore model loader per process: parsing the EC2 model costs ~0.3 s, and every
    session (one per target in a parallel bake) would otherwise parse it again."""
    import botocore.loaders

    return botocore.loaders.create_loader()


class AwsSession:
    """One boto3 session; clients are made once per (service, region) and shared.

    `events` is the session's botocore event emitter: handlers registered there see the
    calls of every client this session makes (tests use it to stub or fault calls)."""

    def __init__(self, settings: AwsSettings | None = None) -> None:
        import boto3.session
        import botocore.exceptions
        import botocore.session

        self.settings = settings or AwsSettings()
        core = botocore.session.get_session()
        core.register_component("data_loader", _shared_loader())
        try:
            self.boto = boto3.session.Session(
                profile_name=self.settings.profile, region_name=self.settings.region, botocore_session=core
            )
            loader = _shared_loader()  # boto3 appends its data path to the loader per session
            loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
            if self.settings.profile and self.settings.profile not in self.boto.available_profiles:
                raise botocore.exceptions.ProfileNotFound(profile=self.settings.profile)
        except botocore.exceptions.ProfileNotFound as exc:
            raise SpecError(
                f"AWS profile {self.settings.profile!r} not found",
                hint="run `aws configure list-profiles` or unset `profile` to use the environment",
            ) from exc
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def region(self) -> str:
        """The default region; a SpecError says how to set one if boto3 found none."""
        region = self.boto.region_name
        if not region:
            raise SpecError(
                "no AWS region configured",
                hint="set `region` in the target, AWS_DEFAULT_REGION (not AWS_REGION), or a profile region",
            )
        return str(region)

    @property
    def events(self) -> Any:
        return self.boto.events

    def client_config(self) -> Any:
        from botocore.config import Config

        return Config(
            retries={
                "mode": self.settings.retry.mode.value,
                "total_max_attempts": self.settings.retry.max_attempts,
            },
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
        )

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client (thread-safe once made) for `service` in `region` (default region if None)."""
        key = (service, region or self.region)
        with self._lock:  # boto3 sessions are not thread-safe while creating clients
            if key not in self._clients:
                self._clients[key] = self.boto.client(
                    service, region_name=key[1], config=self.client_config()
                )
            return self._clients[key]


def client_for(service: str, region: str, profile: str | None = None) -> Any:
    """A client for journal cleaners, which get only JSON arguments (`imgpipe gc`)."""
    return AwsSession(AwsSettings(profile=profile, region=region)).client(service)


def shared_session(ctx: TargetContext, settings: AwsSettings, make: Callable[[], AwsSession]) -> AwsSession:
    """One session per target and settings: a builder and the publishers after it share
    credentials, the retry budget (adaptive mode's rate) and connection pools."""
    key = ("aws-session", settings.model_dump_json())
    if key not in ctx.shared:
        ctx.shared[key] = make()
    return ctx.shared[key]  # type: ignore[no-any-return]
