"""A bake killed with kill -9 leaves a running build; the next command marks it
abandoned once its owner is gone, and never a build whose owner still runs."""

import os
import signal
import subprocess
import sys
import time

from imgpipe.catalog import Status
from imgpipe.catalog.owner import Owner
from tests.catalog.conftest import execute
from tests.conftest import REPO

HOLDER = """
import sys
from imgpipe.catalog import open_catalog
catalog = open_catalog()  # IMGPIPE_CATALOG: a URL never goes on a command line
catalog.claim_spec("web", "ci-1:/specs/web.yml")
catalog.start_build(sys.argv[1], "web", "/specs/web.yml", ["local"], imgpipe_version="0", ansible_core="0")
print("started", flush=True)
sys.stdin.read()
"""


def _start_holder(url, build_id):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, build_id],
        cwd=REPO,
        env={**os.environ, "IMGPIPE_CATALOG": url},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line == "started\n", proc.stderr.read()
    return proc


def test_kill_9_leaves_a_build_that_is_then_marked_abandoned(open_cat, catalog_url):
    catalog = open_cat()
    holder = _start_holder(catalog_url, "20261127T050000Z-killed")
    try:
        catalog.start_build("20261127T050001Z-mine", "web", "/specs/web.yml", ["local"],
                            imgpipe_version="0", ansible_core="0")  # fmt: skip
        assert catalog.reap_abandoned() == []  # both owners are alive

        holder.send_signal(signal.SIGKILL)  # not reaped by its parent yet: a zombie is gone too
        deadline = time.monotonic() + 10
        while not (reaped := catalog.reap_abandoned("web")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()

    assert reaped == ["20261127T050000Z-killed"]
    killed = catalog.get("20261127T050000Z-killed")
    assert killed.status is Status.ABANDONED and killed.finished_at is not None
    assert killed.target("local").status is Status.ABANDONED
    assert catalog.get("20261127T050001Z-mine").status is Status.RUNNING
    assert catalog.reap_abandoned() == []  # once only


def test_only_builds_of_the_named_spec_are_reaped(open_cat, catalog_url):
    catalog = open_cat()
    holder = _start_holder(catalog_url, "b-web")
    holder.kill()
    holder.wait()
    assert catalog.reap_abandoned("db") == []
    assert catalog.get("b-web").status is Status.RUNNING
    assert catalog.reap_abandoned() == ["b-web"]


def test_another_hosts_build_is_left_to_that_host(open_cat, catalog_url):
    catalog = open_cat()
    catalog.claim_spec("web", "ci-1:/specs/web.yml")
    catalog.start_build(
        "b-elsewhere", "web", "/specs/web.yml", ["local"], imgpipe_version="0", ansible_core="0"
    )
    catalog.start_build(
        "b-other-ns", "web", "/specs/web.yml", ["local"], imgpipe_version="0", ansible_core="0"
    )
    dead_pid = _dead_pid()
    other_host = "UPDATE build SET owner_host = 'elsewhere', owner_pid = :pid WHERE id = 'b-elsewhere'"
    execute(catalog_url, other_host, pid=dead_pid)
    other_container = "UPDATE build SET owner_pidns = 'pid:[1]', owner_pid = :pid WHERE id = 'b-other-ns'"
    execute(catalog_url, other_container, pid=dead_pid)  # same host name, its own pids

    assert catalog.reap_abandoned() == []

    execute(catalog_url, "UPDATE build SET owner_boot = 'an-earlier-boot' WHERE id = 'b-other-ns'")
    rebooted = ["b-other-ns"] if Owner.current().machine else []  # told apart by /etc/machine-id
    assert catalog.reap_abandoned() == rebooted


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
