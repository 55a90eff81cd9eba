"""The catalog through the CLI, on SQLite and PostgreSQL: a bake records itself; `status`,
`builds`, `show` read it back; `--if-changed` starts nothing for an unchanged spec and
bakes a changed one; a killed bake reads as abandoned; a spec name is one spec's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.catalog.conftest import execute
from tests.conftest import IMGPIPE, REPO, write

PLUGIN = REPO / "tests" / "aws" / "fakebuilder_plugin"
SPEC = """\
imgpipe: 1
name: hist
variables:
  greeting: {{default: hello}}
  token: {{sensitive: true, default: {token}}}
seal: {{enabled: false}}
targets:
  local: {{builder: fake{extra}}}
"""
TOKEN = "s3cr3t-canary-value"


def imgpipe(tmp: Path, url: str, *args: str, wait: bool = True):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "IMGPIPE_CACHE_DIR": str(tmp / "cache"),
        "IMGPIPE_STATE_DIR": str(tmp / "state"),
        "IMGPIPE_CATALOG": url,  # never on a command line
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN), os.environ.get("PYTHONPATH")])),
    }
    argv = [*IMGPIPE, *args]
    if not wait:
        return subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def spec(tmp: Path, extra: str = "", token: str = TOKEN, where: str = "spec.yml") -> Path:
    return write(tmp / where, SPEC.format(extra=extra, token=token))


def bake(tmp: Path, url: str, path: Path, *flags: str):  # type: ignore[no-untyped-def]
    return imgpipe(tmp, url, "bake", str(path), "--output", str(tmp / "out"), *flags)


def test_a_bake_is_remembered_and_an_unchanged_spec_is_not_baked_again(tmp_path, catalog_url):
    path = spec(tmp_path)
    first = bake(tmp_path, catalog_url, path)
    assert first.returncode == 0, first.stderr
    builds = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    (build,) = builds
    assert build["status"] == "succeeded" and build["targets"]["local"]["status"] == "succeeded"
    assert build["targets"]["local"]["artifact_id"] == "hist-local.qcow2"
    shown = json.loads(imgpipe(tmp_path, catalog_url, "show", build["id"][:18], "--json").stdout)["build"]
    inputs = shown["targets"]["local"]["inputs"]
    assert set(inputs["variables"]) == {"greeting", "token"} and inputs["variables"]["token"].startswith(
        "hmac:"
    )

    status = imgpipe(tmp_path, catalog_url, "status", str(path))
    assert status.stdout.strip() == f"local: up to date with build {build['id']}", (
        status.stdout + status.stderr
    )
    again = bake(tmp_path, catalog_url, path, "--if-changed")
    assert again.returncode == 0 and again.stdout.strip() == f"up to date: {build['id']}", again.stderr
    assert len(list((tmp_path / "out" / "hist").iterdir())) == 1  # nothing started

    # one input changes: status says which, and --if-changed bakes
    spec(tmp_path, token="another-secret")
    status = imgpipe(tmp_path, catalog_url, "status", str(path), "--json")
    (target,) = json.loads(status.stdout)["targets"]
    assert target["up_to_date"] is False and target["changes"] == ["variable token: changed (sensitive)"]
    rebaked = bake(tmp_path, catalog_url, path, "--if-changed")
    assert rebaked.returncode == 0, rebaked.stderr
    assert "local changed: variable token: changed (sensitive)" in rebaked.stderr
    assert len(json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]) == 2


def test_a_good_build_whose_image_is_gone_is_not_up_to_date(tmp_path, catalog_url):
    path = spec(tmp_path)
    assert bake(tmp_path, catalog_url, path).returncode == 0
    (image,) = (tmp_path / "out" / "hist").glob("*/hist-local.qcow2")
    image.unlink()
    status = imgpipe(tmp_path, catalog_url, "status", str(path))
    assert f"image file {image} is gone" in status.stdout, status.stdout + status.stderr
    assert bake(tmp_path, catalog_url, path, "--if-changed").stdout.startswith("local:")  # baked again


def test_a_killed_bake_reads_as_abandoned(tmp_path, catalog_url):
    path = spec(tmp_path, extra=", capture_delay_s: 120")
    proc = imgpipe(tmp_path, catalog_url, "bake", str(path), "--output", str(tmp_path / "out"), wait=False)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "state" / "journal").glob("*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (build,) = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    assert build["status"] == "abandoned" and build["targets"]["local"]["status"] == "abandoned"


def test_one_name_is_one_spec(tmp_path, catalog_url):
    assert bake(tmp_path, catalog_url, spec(tmp_path)).returncode == 0
    other = bake(tmp_path, catalog_url, spec(tmp_path, where="elsewhere/spec.yml"))
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "hist" in other.stderr and "elsewhere" in other.stderr, other.stderr


def test_sensitive_values_never_reach_the_catalog(tmp_path, catalog_url):
    import hashlib

    assert bake(tmp_path, catalog_url, spec(tmp_path)).returncode == 0
    (build,) = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    dumped = imgpipe(tmp_path, catalog_url, "show", build["id"], "--json").stdout
    for forbidden in (
        TOKEN,
        hashlib.sha256(TOKEN.encode()).hexdigest(),
        hashlib.sha256(b'"' + TOKEN.encode() + b'"').hexdigest(),
    ):
        assert forbidden not in dumped
    if catalog_url.startswith("sqlite:///"):
        assert TOKEN.encode() not in Path(catalog_url.removeprefix("sqlite:///")).read_bytes()


def test_diff_takes_build_ids_from_the_catalog(tmp_path, catalog_url):
    path = spec(tmp_path)
    assert bake(tmp_path, catalog_url, path).returncode == 0
    (build,) = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    # the fake builder runs no VM, so its build has no SBOM: diff says so about that build's manifest
    done = imgpipe(tmp_path, catalog_url, "diff", build["id"], build["id"][:17])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(tmp_path / "out" / "hist" / build["id"] / "manifest.json") in done.stderr, done.stderr


def test_a_specs_origin_is_its_repository_and_path_without_credentials(tmp_path):
    from imgpipe.history import spec_origin

    repo = tmp_path / "repo"
    write(
        repo / ".git" / "config",
        '[remote "origin"]\n\turl = https://ci:ghp_SECRET@git.example/team/images.git\n',
    )
    path = write(repo / "images" / "web.yml", "")
    assert spec_origin(path) == "git https://git.example/team/images.git images/web.yml"
    write(repo / ".git" / "config", '[remote "origin"]\n\turl = git@git.example:team/images.git\n')
    assert spec_origin(path) == "git git@git.example:team/images.git images/web.yml"


def test_an_image_file_made_on_another_host_is_named_with_its_host(tmp_path, catalog_url):
    """On a catalog shared by build hosts, an image file lives where it was built: a build
    made elsewhere is up to date without looking for its file here, and commands that need
    the file say which host has it."""
    path = spec(tmp_path)
    assert bake(tmp_path, catalog_url, path).returncode == 0
    (build,) = json.loads(imgpipe(tmp_path, catalog_url, "builds", "--json").stdout)["builds"]
    shown = imgpipe(tmp_path, catalog_url, "show", build["id"]).stdout
    assert f"on host {socket.gethostname()}" in shown
    execute(catalog_url, "UPDATE artifact SET host = 'build-host-b'")
    shutil.rmtree(tmp_path / "out" / "hist")  # this host never had it

    assert "on host build-host-b" in imgpipe(tmp_path, catalog_url, "show", build["id"]).stdout
    status = imgpipe(tmp_path, catalog_url, "status", str(path))
    assert status.stdout.strip() == f"local: up to date with build {build['id']}", (
        status.stdout + status.stderr
    )
    diffed = imgpipe(tmp_path, catalog_url, "diff", build["id"], build["id"])
    assert diffed.returncode == 2 and "was made on host build-host-b" in diffed.stderr, diffed.stderr
