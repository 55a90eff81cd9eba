"""`imgpipe nightly` through the CLI, on SQLite and PostgreSQL, with the fake builder: due
and changed specs bake, the rest are skipped with the reason; one spec's failure stops
none of the others; a spec failing again and again is disabled; two runners on one
catalog never bake a spec twice, and a runner that stops renewing its lease loses it."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.catalog.conftest import execute
from tests.catalog.test_bake_history import imgpipe
from tests.conftest import write

SPEC = """\
imgpipe: 1
name: {name}
variables:
  delay: {{type: number, default: 0}}
seal: {{enabled: false}}
{extra}targets:
  local: {{builder: fake, capture_delay_s: "{{{{ delay }}}}"{target}}}
"""


def spec(directory: Path, name: str, extra: str = "", target: str = "") -> Path:
    return write(directory / f"{name}.yml", SPEC.format(name=name, extra=extra, target=target))


def nightly(tmp: Path, url: str, *args: str, env: dict[str, str] | None = None, wait: bool = True):  # type: ignore[no-untyped-def]
    argv = ["nightly", *args, "--output", str(tmp / "out")]
    if env is None:
        return imgpipe(tmp, url, *argv, wait=wait)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return imgpipe(tmp, url, *argv, wait=wait)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def rows(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {run["name"]: run for run in report["specs"]}


def far_from_now() -> str:
    """A daily cron time twelve hours away: never due in a test that takes minutes."""
    hour = (datetime.now(UTC) + timedelta(hours=12)).hour
    return f"0 {hour} * * *"


def test_nightly_bakes_what_is_due_and_changed_and_says_why_for_the_rest(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    spec(specs, "every")
    spec(specs, "scheduled", extra=f'schedule: {{cron: "{far_from_now()}", timezone: UTC}}\n')
    spec(specs, "broken", target=", fail: true")
    write(specs / "vars" / "every.yml", "delay: 0\n")  # var files are not specs
    hook_out = tmp_path / "hook.json"

    first = nightly(
        tmp_path,
        catalog_url,
        str(specs),
        "--report",
        str(tmp_path / "r1.json"),
        "--on-failure",
        f"cat > {hook_out}",
    )
    assert first.returncode == 1, first.stdout + first.stderr  # one bake failed
    report = json.loads((tmp_path / "r1.json").read_text())
    runs = rows(report)
    assert set(runs) == {"every", "scheduled", "broken"}
    assert runs["every"]["result"] == "succeeded" and runs["every"]["decision"] == "bake"
    assert "never built successfully" in runs["every"]["why"]
    assert runs["scheduled"]["result"] == "succeeded"  # never attempted: due
    assert runs["broken"]["result"] == "failed" and "told to fail" in runs["broken"]["errors"]["local"]
    assert json.loads(hook_out.read_text())["counts"]["failed"] == 1  # the hook got the report
    assert "broken" in first.stdout and "succeeded" in first.stdout  # the summary table

    second = nightly(tmp_path, catalog_url, str(specs), "--json")
    assert second.returncode == 1, second.stderr
    runs = rows(json.loads(second.stdout.strip().splitlines()[-1]))
    assert runs["every"]["result"] == "skipped" and runs["every"]["why"].startswith("unchanged since")
    assert runs["scheduled"]["result"] == "skipped" and runs["scheduled"]["why"].startswith(
        "not due: next at"
    )
    assert runs["broken"]["result"] == "failed"

    forced = nightly(tmp_path, catalog_url, str(specs / "scheduled.yml"), "--all", "--json")
    runs = rows(json.loads(forced.stdout.strip().splitlines()[-1]))
    assert forced.returncode == 0 and runs["scheduled"]["why"].startswith("unchanged since")
    builds = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    assert sorted(b["spec"] for b in builds) == ["broken", "broken", "every", "scheduled"]


def test_a_spec_failing_again_and_again_is_disabled_until_enabled(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    spec(specs, "flaky", extra="rebuild: {disable_after_failures: 2}\n", target=", fail: true")
    results = [nightly(tmp_path, catalog_url, str(specs)) for _ in range(2)]
    assert [r.returncode for r in results] == [1, 1]
    assert "disabled: flaky: 2 nightly bakes in a row failed" in results[1].stdout
    skipped = nightly(tmp_path, catalog_url, str(specs), "--json")
    (run,) = json.loads(skipped.stdout.strip().splitlines()[-1])["specs"]
    assert skipped.returncode == 0 and run["result"] == "skipped" and run["why"].startswith("disabled since")
    enabled = imgpipe(tmp_path, catalog_url, "nightly", "--enable", "flaky")
    assert enabled.returncode == 0 and "enabled flaky" in enabled.stdout
    again = nightly(tmp_path, catalog_url, str(specs), "--json")
    (run,) = json.loads(again.stdout.strip().splitlines()[-1])["specs"]
    assert run["result"] == "failed"  # baked again, and counting from one


def test_two_runners_started_together_bake_a_spec_once(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    spec(specs, "shared")
    env = {"IMGPIPE_VAR_delay": "4"}
    runners = [nightly(tmp_path, catalog_url, str(specs), "--json", env=env, wait=False) for _ in range(2)]
    outputs = [r.communicate(timeout=120) for r in runners]
    assert [r.returncode for r in runners] == [0, 0], [err for _, err in outputs]
    runs = [json.loads(out.strip().splitlines()[-1])["specs"][0] for out, _ in outputs]
    assert sorted(run["result"] for run in runs) == ["skipped", "succeeded"]
    skipped = next(run for run in runs if run["result"] == "skipped")
    assert "another runner has it" in skipped["why"] or skipped["why"].startswith("unchanged since")
    builds = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    assert len(builds) == 1


def _wait_for_running_build(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if execute(url, "SELECT id FROM build WHERE status = 'running'"):
                return
        except Exception:  # noqa: BLE001 - the catalog may not exist yet
            pass
        time.sleep(0.2)
    pytest.fail("the first runner never started its build")


def test_a_runner_that_stops_renewing_loses_the_spec_and_publishes_nothing(tmp_path, catalog_url):
    """SIGSTOP the first runner mid-bake: its lease expires, a second runner bakes the spec;
    resumed, the first finds its lease gone before publishing and leaves no image."""
    specs = tmp_path / "specs"
    spec(specs, "paused")
    ttl = {"IMGPIPE_LEASE_TTL_S": "3"}
    first = nightly(
        tmp_path, catalog_url, str(specs), "--json", env={**ttl, "IMGPIPE_VAR_delay": "6"}, wait=False
    )
    _wait_for_running_build(catalog_url)
    first.send_signal(signal.SIGSTOP)
    try:
        time.sleep(4)  # past the TTL, not renewed
        second = nightly(tmp_path, catalog_url, str(specs), "--json", env=ttl)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert second.returncode == 0, second.stderr
    (run,) = json.loads(second.stdout.strip().splitlines()[-1])["specs"]
    assert run["result"] == "succeeded"
    assert first.returncode == 1, err
    (lost,) = json.loads(out.strip().splitlines()[-1])["specs"]
    assert "lost the lease" in lost["errors"]["local"]
    images = sorted(p.name for p in (tmp_path / "out" / "paused").glob("*/*.qcow2"))
    assert images == ["paused-local.qcow2"]  # the second runner's only


def test_a_runner_killed_mid_bake_leaves_the_spec_to_the_next_run(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    spec(specs, "killed")
    first = nightly(tmp_path, catalog_url, str(specs), env={"IMGPIPE_VAR_delay": "60"}, wait=False)
    _wait_for_running_build(catalog_url)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    second = nightly(tmp_path, catalog_url, str(specs), "--json")
    assert second.returncode == 0, second.stderr
    (run,) = json.loads(second.stdout.strip().splitlines()[-1])["specs"]
    assert run["result"] == "succeeded"  # the dead runner's lease was no obstacle
    statuses = sorted(row[0] for row in execute(catalog_url, "SELECT status FROM build"))
    assert statuses == ["abandoned", "succeeded"]


def test_a_plain_bake_takes_the_same_lease(tmp_path, catalog_url):
    specs = tmp_path / "specs"
    path = spec(specs, "manual")
    runner = nightly(tmp_path, catalog_url, str(specs), env={"IMGPIPE_VAR_delay": "20"}, wait=False)
    try:
        _wait_for_running_build(catalog_url)
        bake = imgpipe(tmp_path, catalog_url, "bake", str(path), "--output", str(tmp_path / "out"))
        assert bake.returncode == 75, bake.stderr
        assert "being baked by another runner" in bake.stderr and f"pid {runner.pid}" in bake.stderr
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=60)
    assert runner.returncode == 130
