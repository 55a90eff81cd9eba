"""Integration tier: real libvirtd, real qemu (TCG), real ansible-runner over SSH.
The bootstrapped base image is built once per run and shared by every test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def imgpipe_env(tmp_path_factory):
    """Environment for `imgpipe` subprocesses: shared cache, private state dir."""
    if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode:
        pytest.fail("libvirtd is not reachable at qemu:///system: run the suite through ./run tests")
    cache = Path(os.environ.get("IMGPIPE_TEST_CACHE", REPO / ".cache" / "test"))
    cache.mkdir(parents=True, exist_ok=True)
    state = tmp_path_factory.mktemp("state")
    env = {**os.environ, "IMGPIPE_CACHE_DIR": str(cache), "IMGPIPE_STATE_DIR": str(state)}
    os.environ.update({"IMGPIPE_CACHE_DIR": str(cache), "IMGPIPE_STATE_DIR": str(state)})
    return env


@pytest.fixture(scope="session")
def base_image(imgpipe_env):
    """Build (or reuse) the default bootstrap base once for the whole run."""
    from imgpipe.events import Emitter, NullSink
    from imgpipe.sources import resolve_source
    from imgpipe.spec import load_spec

    loaded = load_spec(REPO / "examples" / "web.yml")
    return resolve_source(loaded, Emitter(NullSink(), "base")).path


@pytest.fixture(scope="session")
def outside_roles(tmp_path_factory):
    """Roles in a directory unrelated to this repository, as a team would have them."""
    roles = tmp_path_factory.mktemp("team-roles")
    write(
        roles / "marker" / "tasks" / "main.yml",
        """\
- name: Write the marker
  ansible.builtin.copy:
    content: "{{ marker_text }}\\n"
    dest: /etc/team-marker
    mode: "0644"
""",
    )
    write(roles / "marker" / "defaults" / "main.yml", "marker_text: from-team-role\n")
    write(
        roles / "failing" / "tasks" / "main.yml",
        """\
- name: Fail on purpose
  ansible.builtin.fail:
    msg: the team role refuses
""",
    )
    write(
        roles / "sleeper" / "tasks" / "main.yml",
        """\
- name: Sleep for a long time
  ansible.builtin.command: sleep 900
""",
    )
    return roles


def run_imgpipe(env, *args, timeout=1500):
    return subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_dir_from(stdout: str) -> Path:
    for line in stdout.splitlines():
        if line.startswith("manifest: "):
            return Path(line.removeprefix("manifest: ")).parent
    raise AssertionError(f"no manifest line in output:\n{stdout}")


def leftovers(env, build_id: str) -> dict[str, list[str]]:
    """Everything a build could leak: domains, work dirs, journal entries, partial images."""
    names = subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True, text=True
    ).stdout.split()
    cache, state = Path(env["IMGPIPE_CACHE_DIR"]), Path(env["IMGPIPE_STATE_DIR"])
    return {
        "domains": [n for n in names if build_id in n],
        "workdirs": [p.name for p in (cache / "work").glob(f"{build_id}*")],
        "journal": [p.name for p in (state / "journal").glob(f"{build_id}*")],
    }


NOTHING = {"domains": [], "workdirs": [], "journal": []}
