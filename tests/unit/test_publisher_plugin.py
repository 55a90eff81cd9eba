"""A new publisher is one module plus an entry point: the example `copy-to-dir` plugin
(tests/plugins/copydir) is found the way an installed plugin is, bakes through a real
`imgpipe bake` subprocess with the `fake` builder plugin, and is held to the publisher
contract: all or nothing, and a `from:` whose artifact it can't take is a located error."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from imgpipe.capture import sha256_file
from tests.conftest import IMGPIPE, REPO, write

PLUGINS = [REPO / "tests" / "plugins" / "copydir", REPO / "tests" / "aws" / "fakebuilder_plugin"]
SPEC = """\
imgpipe: 1
name: demo
seal: {enabled: false}
targets:
  local: {builder: fake}
publish:
  shelf: {publisher: copy-to-dir, from: local, directory: shelf}
"""


def imgpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IMGPIPE_CACHE_DIR": str(tmp_path / "cache"),
        "IMGPIPE_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": os.pathsep.join(filter(None, [*map(str, PLUGINS), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run([*IMGPIPE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def bake(tmp_path: Path, spec: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    path = write(tmp_path / "spec.yml", spec)
    done = imgpipe(tmp_path, "bake", str(path), "--output", str(tmp_path / "out"))
    (build_dir,) = (tmp_path / "out" / "demo").iterdir()
    return done, build_dir


def test_the_example_publisher_copies_the_image_once_the_target_succeeded(tmp_path):
    done, build_dir = bake(tmp_path, SPEC)
    assert done.returncode == 0, done.stdout + done.stderr
    copy = tmp_path / "shelf" / "demo-local.qcow2"
    assert sha256_file(copy) == sha256_file(build_dir / "demo-local.qcow2")
    assert sorted(p.name for p in copy.parent.iterdir()) == ["demo-local.qcow2"]  # no partial left
    builds = {b["name"]: b for b in json.loads((build_dir / "manifest.json").read_text())["builds"]}
    assert builds["local:shelf"]["builder_type"] == "example.copy-to-dir"
    assert builds["local:shelf"]["artifact_id"] == str(copy)
    assert list((tmp_path / "state" / "journal").glob("*.json")) == []


def test_a_later_failure_removes_the_copy(tmp_path):
    write(tmp_path / "blocked", "a file where a directory should be")
    spec = SPEC + "  jammed: {publisher: copy-to-dir, from: local, directory: blocked}\n"
    done, build_dir = bake(tmp_path, spec)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "blocked" in done.stdout + done.stderr
    assert list((tmp_path / "shelf").iterdir()) == []  # the first copy was undone
    assert not (build_dir / "demo-local.qcow2").exists()
    assert json.loads((build_dir / "manifest.json").read_text())["builds"] == []
    assert list((tmp_path / "state" / "journal").glob("*.json")) == []


def test_from_a_target_whose_artifact_it_cannot_take_is_a_located_error(tmp_path):
    spec = (
        SPEC.replace(
            "  local: {builder: fake}\n",
            "  local: {builder: fake}\n  ec2: {builder: aws, source_ami: ami-0123456789abcdef0}\n",
        )
        + "  wrong: {publisher: copy-to-dir, from: ec2, directory: shelf}\n"
    )
    path = write(tmp_path / "spec.yml", spec)
    done = imgpipe(tmp_path, "validate", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"{path}:9:41: publish.wrong.from: target 'ec2' builds with 'aws', which makes an artifact of "
        "kind 'ami'; publisher 'copy-to-dir' takes 'image-file'"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_changed_publish_settings_alone_publish_the_same_image_again(tmp_path):
    """--if-changed with only a publisher's settings changed: the image is not baked again
    (the fake builder's image is random data: a rebake would differ), its publishers run."""
    done, first = bake(tmp_path, SPEC)
    assert done.returncode == 0, done.stderr
    path = write(tmp_path / "spec.yml", SPEC.replace("directory: shelf", "directory: shelf2"))
    again = imgpipe(tmp_path, "bake", str(path), "--output", str(tmp_path / "out"), "--if-changed")
    assert again.returncode == 0, again.stderr
    assert "local changed: publish settings changed" in again.stderr
    second = next(d for d in (tmp_path / "out" / "demo").iterdir() if d != first)
    image = sha256_file(first / "demo-local.qcow2")
    assert (
        sha256_file(second / "demo-local.qcow2")
        == image
        == sha256_file(tmp_path / "shelf2" / "demo-local.qcow2")
    )
    record = json.loads((second / "manifest.json").read_text())["imgpipe"]["targets"]["local"]
    assert record["source"] == {"kind": "reused", "build_id": first.name}
    assert (first / "demo-local.qcow2").is_file()  # the earlier build keeps its image
    up_to_date = imgpipe(tmp_path, "bake", str(path), "--output", str(tmp_path / "out"), "--if-changed")
    assert up_to_date.stdout.strip() == f"up to date: {second.name}", up_to_date.stderr
