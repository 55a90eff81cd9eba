"""The AWS client factory and the publishing models, without any network."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError

from imgpipe.aws import AwsSession, AwsSettings, RetryMode, RetrySettings, error_code
from imgpipe.errors import PublishError, SpecError
from tests.conftest import REPO


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_EC2",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return tmp_path


def test_retry_mode_and_attempts_reach_the_client(aws_env):
    settings = AwsSettings(region="eu-west-1", retry=RetrySettings(mode=RetryMode.ADAPTIVE, max_attempts=4))
    client = AwsSession(settings).client("ec2")
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    assert client.meta.region_name == "eu-west-1"
    assert RetrySettings().mode is RetryMode.STANDARD


def test_clients_are_shared_per_service_and_region(aws_env):
    session = AwsSession(AwsSettings(region="us-east-1"))
    paths = list(session.boto._loader.search_paths)
    AwsSession()
    assert session.boto._loader.search_paths == paths  # one shared model loader, not growing
    assert session.client("ec2") is session.client("ec2", "us-east-1")
    assert session.client("ec2", "eu-west-1") is not session.client("ec2")


def test_endpoint_and_region_come_from_the_environment(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    session = AwsSession()
    assert session.region == "ap-south-1"
    assert session.client("s3").meta.endpoint_url == "http://127.0.0.1:1"


def test_profile_supplies_region(aws_env):
    (aws_env / "config").write_text("[profile imgpipe-test]\nregion = eu-central-1\n")
    assert AwsSession(AwsSettings(profile="imgpipe-test")).region == "eu-central-1"


def test_missing_region_and_profile_are_spec_errors(aws_env):
    with pytest.raises(SpecError, match="no AWS region"):
        AwsSession().region  # noqa: B018
    with pytest.raises(SpecError, match="profile 'nope' not found"):
        AwsSession(AwsSettings(profile="nope"))


def test_attempts_are_bounded():
    with pytest.raises(ValidationError):
        RetrySettings(max_attempts=0)


def test_importing_the_aws_layer_does_not_import_boto3():
    code = (
        "import sys, imgpipe.aws, imgpipe.publish, imgpipe.publish.aws_import;"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_aws_model_field_has_a_description():
    import imgpipe.aws.session as session
    import imgpipe.publish.ami as ami
    import imgpipe.publish.aws_import as aws_import

    classes = [
        c
        for module in (session, ami, aws_import)
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, BaseModel) and c is not BaseModel
    ]
    assert len(classes) >= 6
    missing = [f"{c.__name__}.{n}" for c in classes for n, f in c.model_fields.items() if not f.description]
    assert missing == []


def test_error_code_reads_client_errors_and_waits():
    from imgpipe.aws import AwsWaitError

    class FakeClientError(Exception):
        response = {"Error": {"Code": "InvalidAMIID.NotFound", "Message": "gone"}}

    assert error_code(FakeClientError()) == "InvalidAMIID.NotFound"
    assert error_code(AwsWaitError("slow", "Timeout")) == "Timeout"
    assert error_code(ValueError()) == "ValueError"
    assert issubclass(PublishError, SpecError.__mro__[1])  # an ImgpipeError
