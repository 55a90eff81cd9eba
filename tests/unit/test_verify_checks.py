"""The built-in checks of a fresh boot, on probe output: a sealed image passes each, an
unsealed one fails the ones its seal would have fixed, and a seal step the spec skips
makes its check `skipped`. Plus the JUnit report reader that names failing tests."""

from __future__ import annotations

from imgpipe.verify.identity import BuildIdentity, Outcome, Probe, evaluate
from imgpipe.verify.imagetests import junit_failures

BUILD = BuildIdentity(
    machine_id="aaaa",
    hostname="imgpipe-local",
    instance_id="imgpipe-b1",
    host_keys=("HOSTKEY1", "HOSTKEY2"),
    build_key="BUILDKEY",
)
SEALED = """\
machine_id=bbbb
hostname=localhost
instance_id=imgpipe-b1-test
cloud_init=done
instance_dir=imgpipe-b1-test
host_key=NEWKEY
authorized=imgpipe-build ssh-ed25519 TESTKEY imgpipe-test
"""
UNSEALED = """\
machine_id=aaaa
hostname=imgpipe-local
instance_id=imgpipe-b1-test
cloud_init=done
instance_dir=imgpipe-b1
instance_dir=imgpipe-b1-test
host_key=HOSTKEY1
authorized=imgpipe-build ssh-ed25519 BUILDKEY imgpipe-build
authorized=imgpipe-build ssh-ed25519 TESTKEY imgpipe-test
history=/root/.bash_history
"""


def outcomes(text: str, skipped: set[str] = frozenset()) -> dict[str, Outcome]:
    return {c.name: c.outcome for c in evaluate(BUILD, Probe.parse(text), set(skipped))}


def test_a_sealed_image_passes_every_check():
    assert set(outcomes(SEALED).values()) == {Outcome.passed}


def test_an_unsealed_image_fails_each_check_its_seal_would_fix():
    assert set(outcomes(UNSEALED).values()) == {Outcome.failed}
    details = {c.name: c.detail for c in evaluate(BUILD, Probe.parse(UNSEALED), set())}
    assert details["build_key"] == "the build key is authorized for imgpipe-build"
    assert "state left from imgpipe-b1" in details["cloud_init"]
    assert "/root/.bash_history" in details["shell_history"]


def test_a_skipped_seal_step_skips_its_check():
    result = outcomes(UNSEALED, {"machine_id", "shell_history"})
    assert result["machine_id"] is Outcome.skipped and result["shell_history"] is Outcome.skipped
    assert result["build_key"] is Outcome.failed


def test_no_cloud_init_run_is_a_failure():
    assert outcomes(SEALED.replace("cloud_init=done", "cloud_init=error"))["cloud_init"] is Outcome.failed


def test_junit_failures_name_the_test_and_the_first_line_of_its_assertion(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_image" name="test_ok"/>'
        '<testcase classname="tests.test_image" name="test_page">'
        '<failure message="AssertionError: no page&#10;assert False">trace</failure></testcase>'
        '<testcase classname="tests.test_image" name="test_setup"><error message="">boom</error></testcase>'
        "</testsuite></testsuites>"
    )
    assert [str(f) for f in junit_failures(report)] == [
        "tests.test_image::test_page: AssertionError: no page",
        "tests.test_image::test_setup: boom",
    ]
