"""`publisher: aws-import` in a real `imgpipe bake` subprocess, interrupted the way users
interrupt: SIGINT or SIGTERM while the image uploads or while the import runs, and kill -9
followed by `imgpipe gc`. The subprocess talks to moto through the loopback proxy
(tests/aws/awsproxy.py), which answers VM Import and holds a chosen call until the test
lets it go; its target is the `fake` builder plugin (tests/aws/fakebuilder_plugin)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.aws.conftest import SOURCE_REGION, inventory, plain, tags
from tests.conftest import IMGPIPE, REPO, write

BUCKET = "imgpipe-imports"
PLUGIN_DIR = Path(__file__).resolve().parent / "fakebuilder_plugin"
SPEC = f"""\
imgpipe: 1
name: demo
seal: {{enabled: false}}
targets:
  local: {{builder: fake, image_mib: 12}}  # random data: 3 parts of 5 MiB once converted
publish:
  ami:
    publisher: aws-import
    from: local
    aws: {{region: {SOURCE_REGION}}}
    import: {{bucket: {BUCKET}, part_size_mib: 5, max_concurrency: 1, poll_interval: 60}}
    publish: {{tags: {{team: web}}, ssm_parameter: /images/demo/latest}}
"""
PROMPT = 5.0  # seconds from a signal to exit 130: every wait ends within 2 s, then rollback


class ImportBake:
    """One test's bake subprocess and the `imgpipe gc` runs after it."""

    def __init__(self, tmp_path: Path, proxy: Any, state: Path) -> None:
        self.tmp, self.proxy, self.state = tmp_path, proxy, state
        self.spec = write(tmp_path / "spec.yml", SPEC)
        self.proc: subprocess.Popen[bytes] | None = None
        plain("s3").create_bucket(Bucket=BUCKET)

    def env(self, state: Path | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ENDPOINT_URL": self.proxy.url,
            "IMGPIPE_CACHE_DIR": str(self.tmp / "cache"),
            "IMGPIPE_STATE_DIR": str(state or self.state),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])),
        }

    def start(self) -> subprocess.Popen[bytes]:
        argv = [*IMGPIPE, "bake", str(self.spec), "--output", str(self.tmp / "out"), "--json"]
        log = open(self.tmp / "bake.log", "wb")  # noqa: SIM115 - the subprocess owns it
        self.proc = subprocess.Popen(argv, env=self.env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self.proc

    def wait_for(self, hold: Any, timeout: float = 60) -> None:
        """Until the held call reached the proxy; fail early if the bake ended first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not hold.arrived.wait(0.05):
            assert self.proc.poll() is None, f"the bake ended first:\n{self.log()}"
            assert time.monotonic() < deadline, f"{hold.operation} never came:\n{self.log()}"

    def exit_code(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the bake did not end within {timeout:g} s:\n{self.log()}")

    def log(self) -> str:
        return (self.tmp / "bake.log").read_text(errors="replace")

    def gc(self, *args: str, state: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*IMGPIPE, "gc", *args],
            env=self.env(state),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def leftovers(self) -> dict[str, object]:
        s3 = plain("s3")
        return {
            "objects": [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])],
            "uploads": [u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])],
            "images": sorted(i for images, _ in inventory().values() for i in images),
            "snapshots": sorted(s for _, snaps in inventory().values() for s in snaps),
            "ssm": [p["Name"] for p in plain("ssm").describe_parameters()["Parameters"]],
            "journal": sorted(p.name for p in (self.state / "journal").glob("*.json")),
            "partials": sorted(p.name for p in (self.tmp / "out").rglob("*.partial")),
        }


NOTHING = {
    "objects": [],
    "uploads": [],
    "images": [],
    "snapshots": [],
    "ssm": [],
    "journal": [],
    "partials": [],
}


@pytest.fixture
def import_bake(aws_proxy, tmp_path, isolated_state):
    bake = ImportBake(tmp_path, aws_proxy, isolated_state)
    yield bake
    aws_proxy.reset()  # releases any hold, so a failed test's bake can end
    bake.stop()


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_signal_during_upload_aborts_it_and_leaves_nothing(import_bake, aws_proxy, signum):
    second_part = aws_proxy.hold("UploadPart", nth=2)
    bake = import_bake.start()
    import_bake.wait_for(second_part)
    bake.send_signal(signum)
    time.sleep(0.5)  # the signal is handled (cancel set) while the part is in flight
    second_part.release()
    assert import_bake.exit_code(PROMPT) == 130, import_bake.log()
    assert aws_proxy.count("UploadPart") == 2  # no part started after the signal
    assert aws_proxy.count("AbortMultipartUpload") >= 1
    assert aws_proxy.count("ImportSnapshot") == 0
    assert import_bake.leftovers() == NOTHING


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_signal_while_importing_cancels_the_import_and_leaves_nothing(import_bake, aws_proxy, signum):
    first_poll = aws_proxy.hold("DescribeImportSnapshotTasks")
    bake = import_bake.start()
    import_bake.wait_for(first_poll)
    first_poll.release()  # answered `active`: the bake now waits 60 s (poll_interval) to poll again
    bake.send_signal(signum)
    assert import_bake.exit_code(PROMPT) == 130, import_bake.log()
    assert aws_proxy.cancelled == list(aws_proxy.tasks)  # the one import task, cancelled
    assert import_bake.leftovers() == NOTHING


@pytest.mark.parametrize("import_after_kill", ["running", "completed"])
@pytest.mark.parametrize("with_journal", [True, False], ids=["gc", "gc-aws-region"])
def test_gc_after_kill_9_during_import(import_bake, aws_proxy, tmp_path, with_journal, import_after_kill):
    """After kill -9 the import runs on in AWS and may complete. `imgpipe gc` finds all of it
    through the journal; with the journal gone, `gc --aws-region` finds it by its tags."""
    first_poll = aws_proxy.hold("DescribeImportSnapshotTasks")
    bake = import_bake.start()
    import_bake.wait_for(first_poll)
    bake.kill()
    bake.wait()
    first_poll.release()
    if import_after_kill == "completed":
        aws_proxy.complete_imports()

    (task,) = aws_proxy.tasks.values()
    (key,) = import_bake.leftovers()["objects"]
    object_tags = plain("s3").get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    for found in (task.tags, {t["Key"]: t["Value"] for t in object_tags}):
        assert found["imgpipe:build-id"] and found["imgpipe:target"] == "local", found
        assert (found["imgpipe:spec"], found["imgpipe:state"], found["team"]) == ("demo", "building", "web")
    if task.snapshot_id:
        assert tags(plain("ec2"), task.snapshot_id) == {}  # made after the kill: nobody tagged it

    if with_journal:
        gc = import_bake.gc()
    else:
        sweep = ("--aws-region", SOURCE_REGION, "--aws-bucket", BUCKET, "--older-than", "0")
        gc = import_bake.gc(*sweep, state=tmp_path / "empty")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    if import_after_kill == "running":
        assert aws_proxy.cancelled == [task.task_id]
    left = import_bake.leftovers()
    if not with_journal:  # only the journal names local files
        assert left["partials"] and len(left["journal"]) == 1
        left.update(partials=[], journal=[])
    assert left == NOTHING


def test_gc_aws_bucket_aborts_the_upload_of_a_killed_bake(import_bake, aws_proxy, tmp_path):
    """kill -9 mid-upload on a runner whose journal is gone: the unfinished multipart upload
    has no tags yet; `gc --aws-bucket` finds it by the build id in its key. A dry run first
    lists it and leaves it."""
    second_part = aws_proxy.hold("UploadPart", nth=2)
    bake = import_bake.start()
    import_bake.wait_for(second_part)
    bake.kill()
    bake.wait()
    second_part.release()
    assert len(import_bake.leftovers()["uploads"]) == 1
    sweep = ("--aws-bucket", BUCKET, "--older-than", "0")
    dry = import_bake.gc(*sweep, "--dry-run", state=tmp_path / "empty")
    assert dry.returncode == 0 and "would remove s3-upload" in dry.stdout, dry.stdout + dry.stderr
    assert len(import_bake.leftovers()["uploads"]) == 1
    gc = import_bake.gc(*sweep, state=tmp_path / "empty")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert import_bake.leftovers()["uploads"] == []


def test_an_import_the_rollback_could_not_cancel_stays_journaled_for_gc(import_bake, aws_proxy):
    """The rollback's cancel fails, and so does the journal's own try when the target ends:
    the task stays in the journal, and a later `imgpipe gc` cancels it."""
    for nth in (1, 2):
        aws_proxy.fail("CancelImportTask", "UnauthorizedOperation", status=403, nth=nth)
    first_poll = aws_proxy.hold("DescribeImportSnapshotTasks")
    bake = import_bake.start()
    import_bake.wait_for(first_poll)
    first_poll.release()
    bake.send_signal(signal.SIGTERM)
    assert import_bake.exit_code(PROMPT) == 130, import_bake.log()
    assert "UnauthorizedOperation" in import_bake.log()  # reported: could not undo the import task
    (task_id,) = aws_proxy.tasks
    assert aws_proxy.cancelled == [] and len(import_bake.leftovers()["journal"]) == 1

    gc = import_bake.gc()
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert aws_proxy.cancelled == [task_id]
    assert import_bake.leftovers() == NOTHING
