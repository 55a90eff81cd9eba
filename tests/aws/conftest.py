"""A real moto server on loopback for the whole session, wiped between tests.

Clients reach it through AWS_ENDPOINT_URL (boto3 honours it natively), so imgpipe's code
runs unchanged. Helpers here read moto's state back with plain clients (no imgpipe code)
and inject faults at the botocore layer of an imgpipe AwsSession."""

from __future__ import annotations

import functools
import logging
import random
import re
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

REGIONS = ("us-east-1", "eu-west-1", "us-west-2")
SOURCE_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    # no built-in AMIs: describe_* stays fast and every image or snapshot seen is ours
    mp = pytest.MonkeyPatch()
    mp.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    url = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": SOURCE_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }.items():
        mp.setenv(name, value)
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SSM",
    ):
        mp.delenv(name, raising=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    plain("ec2").describe_images(Owners=["self"])  # moto loads its backends on first use (~3 s)
    yield url
    server.stop()
    mp.undo()


@pytest.fixture
def moto(moto_server: str) -> Iterator[str]:
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()
    yield moto_server


@pytest.fixture(scope="session")
def aws_proxy_server(moto_server: str) -> Iterator[Any]:
    from tests.aws.awsproxy import AwsProxy

    proxy = AwsProxy(moto_server)
    yield proxy
    proxy.close()


@pytest.fixture
def aws_proxy(moto: str, aws_proxy_server: Any) -> Iterator[Any]:
    """The loopback proxy in front of a wiped moto (tests/aws/awsproxy.py): what an `imgpipe`
    subprocess talks to (AWS_ENDPOINT_URL=aws_proxy.url) when it needs VM Import or holds."""
    aws_proxy_server.reset()
    yield aws_proxy_server
    aws_proxy_server.reset()


@functools.cache
def plain(service: str, region: str = SOURCE_REGION) -> Any:
    """A client with no imgpipe hooks, for seeding and reading moto's state."""
    return _plain_session().client(service, region_name=region)


@functools.cache
def _plain_session() -> Any:
    import boto3.session

    return boto3.session.Session()


def seed_ami(region: str = SOURCE_REGION, name: str = "web-1") -> tuple[str, list[str]]:
    """A source AMI the way the EC2 builder makes one: run an instance, create_image."""
    ec2 = plain("ec2", region)
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.small")
    instance_id = instance["Instances"][0]["InstanceId"]
    image_id = ec2.create_image(InstanceId=instance_id, Name=name, Description="web image")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    return image_id, snapshots_of(ec2, image_id)


def snapshots_of(ec2: Any, image_id: str) -> list[str]:
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"] if "Ebs" in b]


def build_resources() -> dict[str, list[str]]:
    """What builds leave in moto's default region: every instance not terminated (seed_ami
    terminates its own), every key pair, every security group named imgpipe-*."""
    ec2 = plain("ec2")
    return {
        "instances": [
            i["InstanceId"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ],
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]],
        "groups": [
            g["GroupName"]
            for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"].startswith("imgpipe-")
        ],
    }


def inventory() -> dict[str, tuple[set[str], set[str]]]:
    """Every (image ids, snapshot ids) moto holds per region."""
    out = {}
    for region in REGIONS:
        ec2 = plain("ec2", region)
        images = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
        snaps = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        out[region] = (images, snaps)
    return out


def tags(ec2: Any, resource: str) -> dict[str, str]:
    found = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource]}])["Tags"]
    return {t["Key"]: t["Value"] for t in found}


def request_region(request: Any) -> str:
    match = re.search(r"Credential=[^/]+/\d+/([^/]+)/", request.headers.get("Authorization", b"").decode())
    return match.group(1) if match else "?"


def error_response(request: Any, status: int, code: str, message: str) -> Any:
    """An AWS error answer in the protocol of the request (EC2 query XML or JSON)."""
    from botocore.awsrequest import AWSResponse

    target = request.headers.get("X-Amz-Target")
    if target:  # JSON protocol (SSM)
        body = f'{{"__type": "{code}", "message": "{message}"}}'.encode()
        headers = {"Content-Type": "application/x-amz-json-1.1"}
    else:
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>injected</RequestID></Response>"
        ).encode()
        headers = {"Content-Type": "text/xml"}

    class Raw:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def stream(self, **_: Any) -> Iterator[bytes]:
            yield self.data

    return AWSResponse(request.url, status, headers, Raw(body))


def inject(
    session: Any,
    service: str,
    operation: str,
    *,
    region: str | None = None,
    nth: int = 1,
    exc: Any = None,
    status: int = 403,
    code: str = "UnauthorizedOperation",
) -> Callable[[], int]:
    """Answer the `nth` matching call (1-based) with an error, or raise `exc` there.
    Returns a counter of matching calls seen."""
    seen = [0]

    def handler(request: Any, **_: Any) -> Any:
        if region and request_region(request) != region:
            return None
        seen[0] += 1
        if seen[0] != nth:
            return None
        if exc is not None:
            raise exc
        return error_response(request, status, code, f"injected fault in {operation}")

    session.events.register(f"before-send.{service}.{operation}", handler)
    return lambda: seen[0]


def throttle(session: Any, service: str, rate: float, seed: int = 7) -> Callable[[], int]:
    """Answer about `rate` of the service's calls, and always the first one, with 503
    RequestLimitExceeded (seeded: a failure is reproducible)."""
    rng = random.Random(seed)
    count = [0]
    calls = [0]

    def handler(request: Any, **_: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1 or rng.random() < rate:
            count[0] += 1
            return error_response(request, 503, "RequestLimitExceeded", "Request limit exceeded.")
        return None

    session.events.register(f"before-send.{service}", handler)
    return lambda: count[0]
