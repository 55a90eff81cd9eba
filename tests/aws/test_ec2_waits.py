"""The waits and retries moto cannot show by itself (it has no pending states and lets a
group in use be deleted): the states and errors are injected, the calls are real."""

from __future__ import annotations

import pytest

from imgpipe.aws import buildres
from imgpipe.aws.errors import AwsWaitError
from imgpipe.aws.session import AwsSession, AwsSettings
from tests.aws.conftest import SOURCE_REGION, inject, plain


@pytest.fixture
def session(moto):
    return AwsSession(AwsSettings(region=SOURCE_REGION))


def _group(name: str) -> str:
    ec2 = plain("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    return ec2.create_security_group(GroupName=name, Description="d", VpcId=vpc)["GroupId"]  # type: ignore[no-any-return]


def test_security_group_delete_retries_dependency_violation(session):
    group = _group("imgpipe-x")
    for nth in (1, 2):  # hooks go on the session before its client exists: clients copy them
        inject(session, "ec2", "DeleteSecurityGroup", nth=nth, status=400, code="DependencyViolation")
    ec2 = session.client("ec2")
    slept: list[float] = []
    buildres.delete_security_group(ec2, group, sleep=slept.append)
    assert len(slept) == 2 and all(s > 0 for s in slept)  # two refusals, two backoffs, then deleted
    assert [g["GroupId"] for g in plain("ec2").describe_security_groups()["SecurityGroups"]].count(group) == 0


def test_security_group_delete_gives_up_after_its_deadline(session):
    group = _group("imgpipe-y")
    for nth in range(1, 50):
        inject(session, "ec2", "DeleteSecurityGroup", nth=nth, status=400, code="DependencyViolation")
    ec2 = session.client("ec2")
    with pytest.raises(Exception) as info:
        buildres.delete_security_group(ec2, group, timeout=0, sleep=lambda s: None)
    assert "DependencyViolation" in str(info.value)


def _instance(ec2) -> str:
    return ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]


def test_wait_for_running_fails_fast_when_the_instance_terminates(session):
    ec2 = session.client("ec2")
    instance = _instance(ec2)
    ec2.terminate_instances(InstanceIds=[instance])
    with pytest.raises(AwsWaitError) as info:
        buildres.wait_for_instance(ec2, instance, "running", timeout=600, poll_interval=0)
    assert info.value.code == "InstanceTerminated"


def test_wait_times_out_on_a_state_that_never_comes(session):
    """A pending state injected into moto's real answer: the wait polls until its deadline."""
    instance = _instance(plain("ec2"))

    def still_pending(parsed, **_):
        for reservation in parsed.get("Reservations", []):
            for found in reservation["Instances"]:
                found["State"] = {"Code": 0, "Name": "pending"}

    session.events.register("after-call.ec2.DescribeInstances", still_pending)
    ec2 = session.client("ec2")
    polls: list[float] = []
    with pytest.raises(AwsWaitError) as info:
        buildres.wait_for_instance(
            ec2, instance, "running", timeout=0.3, poll_interval=0.05, sleep=polls.append
        )
    assert info.value.code == "Timeout" and "is pending" in str(info.value) and polls
