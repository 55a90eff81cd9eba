"""`publisher: command` (Packer's shell-local) through a real `imgpipe bake` with the fake
builder: the command sees the artifact in its environment and a JSON file, its last
stdout line is the published id, a non-zero exit fails the target, and a later failure
runs its undo command with the published id."""

from __future__ import annotations

import json

from imgpipe.capture import sha256_file
from tests.conftest import write
from tests.unit.test_publisher_plugin import bake

SPEC = """\
imgpipe: 1
name: demo
seal: {{enabled: false}}
targets:
  local: {{builder: fake}}
publish:
{publishers}"""

SHOW = (
    "  glance:\n    publisher: command\n    from: local\n    env: {REGION: north}\n"
    "    command: >-\n"
    '      cp "$IMGPIPE_PUBLISH_JSON" seen.json && env | grep -E "^(IMGPIPE_|REGION=)" | sort > env.txt'
    ' && sha256sum "$IMGPIPE_ARTIFACT_PATH" > sum.txt && echo uploading && echo "image-$IMGPIPE_BUILD_ID"\n'
)


def test_the_command_sees_the_artifact_and_its_last_line_is_the_published_id(tmp_path):
    done, build_dir = bake(tmp_path, SPEC.format(publishers=SHOW))
    assert done.returncode == 0, done.stdout + done.stderr
    build_id = build_dir.name
    seen = json.loads((tmp_path / "seen.json").read_text())
    image = build_dir / "demo-local.qcow2"
    assert seen["artifact_sha256"] == sha256_file(image) and seen["artifact_format"] == "qcow2"
    assert (seen["build_id"], seen["target"], seen["spec"]) == (build_id, "local", "demo")
    assert (tmp_path / "sum.txt").read_text().split()[0] == sha256_file(image)  # the path was readable
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert env["IMGPIPE_ARTIFACT_NAME"] == "demo-local.qcow2" and env["REGION"] == "north"
    assert env["IMGPIPE_BUILD_ID"] == build_id and env["IMGPIPE_TARGET"] == "local"
    builds = {b["name"]: b for b in json.loads((build_dir / "manifest.json").read_text())["builds"]}
    assert builds["local:glance"]["artifact_id"] == f"image-{build_id}"
    assert builds["local:glance"]["builder_type"] == "imgpipe.command"
    assert "uploading" in (build_dir / "logs" / "local" / "publish-glance.log").read_text()


def test_a_failing_command_fails_the_target_and_ships_nothing(tmp_path):
    failing = "  glance: {publisher: command, from: local, command: 'echo no quota >&2; exit 3'}\n"
    done, build_dir = bake(tmp_path, SPEC.format(publishers=failing))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "exited with 3" in done.stderr and "no quota" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (build_dir / "demo-local.qcow2").exists()
    assert json.loads((build_dir / "manifest.json").read_text())["builds"] == []


def test_a_later_failure_runs_the_undo_command_with_the_published_id(tmp_path):
    publishers = (
        "  first:\n    publisher: command\n    from: local\n    command: [echo, pushed-42]\n"
        '    undo: echo "removed $IMGPIPE_PUBLISHED_ID of $IMGPIPE_TARGET" > undone.txt\n'
        "  second: {publisher: command, from: local, command: 'exit 1'}\n"
    )
    done, _ = bake(tmp_path, SPEC.format(publishers=publishers))
    assert done.returncode == 1, done.stdout + done.stderr
    assert (tmp_path / "undone.txt").read_text() == "removed pushed-42 of local\n"
    assert list((tmp_path / "state" / "journal").glob("*.json")) == []


def test_a_command_that_prints_no_id_fails(tmp_path):
    silent = "  glance: {publisher: command, from: local, command: 'true'}\n"
    done, _ = bake(tmp_path, SPEC.format(publishers=silent))
    assert done.returncode == 1
    assert "printed nothing on stdout" in done.stderr


def test_an_unknown_setting_is_a_located_error(tmp_path):
    from tests.unit.test_publisher_plugin import imgpipe

    spec = SPEC.format(publishers="  glance: {publisher: command, from: local, comand: x}\n")
    done = imgpipe(tmp_path, "validate", str(write(tmp_path / "spec.yml", spec)))
    assert done.returncode == 2 and "spec.yml:7" in done.stderr, done.stderr
