"""Integration tier: real libvirtd, real qemu (TCG), real ansible-runner over SSH.
The bootstrapped base image is built once per run and shared by every test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Mark every test under this directory `integration` (a conftest's `pytestmark` has
    no effect), so `-m "not integration"` really selects the fast tiers."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


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
def web_build(imgpipe_env, base_image, tmp_path_factory):
    """examples/web.yml baked once per run (README's command), recorded in a catalog of its
    own (`catalog`): test_bake_web checks it, test_lineage builds a child on it."""
    import json

    before = base_image.stat()
    out = tmp_path_factory.mktemp("web-out")
    catalog = f"sqlite:///{tmp_path_factory.mktemp('web-catalog') / 'catalog.sqlite'}"
    proc = run_imgpipe(imgpipe_env, "bake", "examples/web.yml", "--output", str(out), catalog_url=catalog)
    assert proc.returncode == 0, f"bake failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    build = build_dir_from(proc.stdout)
    after = base_image.stat()
    return {
        "dir": build,
        "manifest": json.loads((build / "manifest.json").read_text()),
        "base_unchanged": (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns),
        "env": imgpipe_env,
        "catalog": catalog,
    }


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
    write(
        roles / "no_poweroff" / "tasks" / "main.yml",
        """\
- name: A logind drop-in directory
  ansible.builtin.file:
    path: /etc/systemd/logind.conf.d
    state: directory
    mode: "0755"
- name: Ignore the ACPI power button, as some appliance roles do
  ansible.builtin.copy:
    content: "[Login]\\nHandlePowerKey=ignore\\n"
    dest: /etc/systemd/logind.conf.d/ignore-power-key.conf
    mode: "0644"
- name: Restart logind
  ansible.builtin.command: systemctl restart systemd-logind
""",
    )
    write(
        roles / "hardening" / "tasks" / "main.yml",
        """\
- name: Look for every default host key, as OS/SSH hardening roles do
  ansible.builtin.stat:
    path: "/etc/ssh/ssh_host_{{ item }}_key"
  loop: [rsa, ecdsa, ed25519]
  register: hardening_host_keys
- name: Every default host key exists
  ansible.builtin.assert:
    that: hardening_host_keys.results | map(attribute='stat.exists') | list == [true, true, true]
- name: Tighten host key permissions (fails on a missing key, as the real role does)
  ansible.builtin.file:
    path: "/etc/ssh/ssh_host_{{ item }}_key"
    mode: "0600"
  loop: [rsa, ecdsa, ed25519]
- name: No root login over SSH
  ansible.builtin.lineinfile:
    path: /etc/ssh/sshd_config
    regexp: "^#?PermitRootLogin"
    line: PermitRootLogin no
- name: Restart sshd
  ansible.builtin.command: systemctl restart ssh
""",
    )
    write(
        roles / "deploy_user" / "tasks" / "main.yml",
        """\
- name: A service user
  ansible.builtin.user:
    name: deploy
    shell: /bin/sh
- name: Give it the keys that log in now, as some roles do for an admin's keys
  ansible.builtin.shell: >-
    install -d -m 700 -o deploy -g deploy /home/deploy/.ssh &&
    cat /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys 2>/dev/null
    > /home/deploy/.ssh/authorized_keys; test -s /home/deploy/.ssh/authorized_keys
  changed_when: true
""",
    )
    write(
        roles / "network_probe" / "tasks" / "main.yml",
        """\
- name: The host's loopback is out of reach through the gateway (slirp maps 10.0.2.2 to it)
  ansible.builtin.command: timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{{ probe_port }}'
  register: probe_gateway
  failed_when: probe_gateway.rc == 0
  changed_when: false
- name: And through the package proxy
  ansible.builtin.command: >-
    python3 -c "import urllib.request as u;
    proxied = u.build_opener(u.ProxyHandler({'http': 'http://127.0.0.1:43128/'}));
    proxied.open('http://127.0.0.1:{{ probe_port }}/', timeout=20)"
  environment: {no_proxy: "", NO_PROXY: ""}
  register: probe_proxy
  failed_when: probe_proxy.rc == 0 or 'HTTP Error 403' not in probe_proxy.stderr
  changed_when: false
- name: Packages still come in (through the proxy)
  ansible.builtin.command: apt-get update
  changed_when: false
""",
    )
    return roles


@pytest.fixture(autouse=True)
def test_catalog_for_subprocesses(request, private_catalog):
    """A subprocess given the session's env gets this test's own catalog too: the specs of
    one name in many tmp dirs must not share one catalog, which refuses that (as it should)."""
    if "imgpipe_env" not in request.fixturenames:
        yield
        return
    env = request.getfixturevalue("imgpipe_env")
    env["IMGPIPE_CATALOG"] = os.environ["IMGPIPE_CATALOG"]
    yield
    env.pop("IMGPIPE_CATALOG", None)


def run_imgpipe(env, *args, timeout=1500, catalog_url=None):
    """`imgpipe ARGS` with the test's own catalog, or `catalog_url` when given."""
    catalog = {"IMGPIPE_CATALOG": os.environ["IMGPIPE_CATALOG"]} if "IMGPIPE_CATALOG" in os.environ else {}
    if catalog_url is not None:
        catalog = {"IMGPIPE_CATALOG": catalog_url}
    return subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", *args],
        env={**env, **catalog},  # the test's own catalog (tests/conftest.py)
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
