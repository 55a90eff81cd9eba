"""A team's spec: roles from a directory outside this repository (roles_path), among
them a hardening role that turns off root login, a role of its own beside the spec, a
sensitive variable, seal steps skipped, and an operator whose ~/.ssh/config would
redirect every ssh and whose cache dir has a space in it. One bake, several checks: the
outside role is applied as it is, the secret never shows anywhere, imgpipe's own
connections survive the hardening, and what the seal must always remove is gone."""

import json
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest

from imgpipe.roles import tree_digest
from tests.conftest import write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe
from tests.integration.imagefs import ImageFiles

SPEC = """\
imgpipe: 1
name: team
variables:
  api_token: {{type: string, sensitive: true, required: true, description: Token the app needs}}
  probe_port: {{type: integer, required: true, description: A host loopback port the VM must not reach}}
provision:
  roles_path: [{outside}]
  roles:
    - marker
    - network_probe
    - hardening
    - deploy_user
    - role: app
      vars: {{app_token: "{{{{ api_token }}}}"}}
seal: {{skip: [cloud_init, ssh_host_keys]}}
targets:
  local: {{builder: libvirt, disk_gb: 4}}
"""

APP_ROLE = """\
- name: Store the token where the app reads it
  ansible.builtin.copy:
    content: "{{ app_token }}\\n"
    dest: /etc/app-token
    mode: "0600"
  no_log: true
- name: A careless task that prints it (the log copy must still hide it)
  ansible.builtin.debug:
    msg: "token is {{ app_token }}"
"""


class ProcessWatcher(threading.Thread):
    """Samples every process's command line until stopped."""

    def __init__(self, needle: str) -> None:
        super().__init__(daemon=True)
        self.needle, self.hits, self.samples = needle.encode(), [], 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    data = cmdline.read_bytes()
                except OSError:
                    continue
                if self.needle in data:
                    self.hits.append(data.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            time.sleep(0.1)


@pytest.fixture(scope="module")
def team_bake(imgpipe_env, base_image, outside_roles, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("team")
    canary = "canary-" + secrets.token_hex(12)
    spec = write(tmp / "spec" / "spec.yml", SPEC.format(outside=outside_roles))
    write(tmp / "spec" / "roles" / "app" / "tasks" / "main.yml", APP_ROLE)
    var_file = write(tmp / "secrets.yml", f"api_token: {canary}\n")
    var_file.chmod(0o600)
    digest = tree_digest(outside_roles / "marker")
    env = operator_env(imgpipe_env, tmp)
    watcher, listener = ProcessWatcher(canary), LoopbackListener()
    watcher.start()
    try:
        proc = run_imgpipe(
            env,
            *("bake", str(spec), "--var-file", str(var_file), "--var", f"probe_port={listener.port}"),
            *("--output", str(tmp / "out")),
        )
    finally:
        watcher.stop.set()
        watcher.join()
        listener.close()
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {
        "proc": proc,
        "build": build_dir_from(proc.stdout),
        "canary": canary,
        "watcher": watcher,
        "digest": digest,
        "outside": outside_roles,
        "listener": listener,
        "env": {**imgpipe_env, "IMGPIPE_CACHE_DIR": str(Path(env["XDG_CACHE_HOME"]) / "imgpipe")},
    }


class LoopbackListener:
    """A service on the host's 127.0.0.1 that counts who connects: the build VM must not."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def operator_env(imgpipe_env, tmp: Path) -> dict[str, str]:
    """A home whose ~/.ssh/config sends every ssh through a jump host that does not exist,
    as another user and another control socket; and XDG_CACHE_HOME with a space in it
    (sharing the suite's cached base through a symlink)."""
    home = tmp / "home"
    write(
        home / ".ssh" / "config",
        "Host *\n  ProxyJump nobody@jump.invalid\n  User nobody\n"
        "  ControlMaster auto\n  ControlPath /nonexistent/%C\n",
    )
    cache = tmp / "xdg cache"
    (cache / "imgpipe").mkdir(parents=True)
    (cache / "imgpipe" / "bases").symlink_to(Path(imgpipe_env["IMGPIPE_CACHE_DIR"]) / "bases")
    env = {k: v for k, v in imgpipe_env.items() if k != "IMGPIPE_CACHE_DIR"}
    return {**env, "HOME": str(home), "XDG_CACHE_HOME": str(cache)}


def test_outside_role_is_applied_unchanged(team_bake):
    build, outside = team_bake["build"], team_bake["outside"]
    roles = json.loads((build / "manifest.json").read_text())["imgpipe"]["roles"]
    assert roles[0] == {"name": "marker", "path": str(outside / "marker"), "sha256": team_bake["digest"]}
    assert tree_digest(outside / "marker") == team_bake["digest"]
    log = (build / "logs" / "local" / "ansible-provision.log").read_text()
    assert "TASK [marker : Write the marker]" in log and "changed: [local]" in log
    assert (build / "team-local.qcow2").is_file()
    assert leftovers(team_bake["env"], build.name) == NOTHING


def files_containing(root: Path, needle: bytes, skip=lambda p: False) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not skip(p) and needle in p.read_bytes()]


def test_sensitive_canary_never_leaks(team_bake):
    canary, build, proc, watcher = (team_bake[k] for k in ("canary", "build", "proc", "watcher"))
    assert watcher.samples > 100 and watcher.hits == []
    assert canary not in proc.stdout and canary not in proc.stderr
    assert "token is ***" in (build / "logs" / "local" / "ansible-provision.log").read_text()
    needle = canary.encode()
    # the image is where the role wrote it on purpose
    assert files_containing(build, needle, skip=lambda p: p.suffix == ".qcow2") == []
    cache, state = Path(team_bake["env"]["IMGPIPE_CACHE_DIR"]), Path(team_bake["env"]["IMGPIPE_STATE_DIR"])
    assert files_containing(cache / "work", needle) == []
    assert files_containing(state, needle) == []


def test_the_seal_removes_what_it_must_whatever_is_skipped(team_bake, tmp_path):
    """cloud_init and ssh_host_keys are skipped, yet the host keys imgpipe injected and the
    cloud-init user data that carried the private one are gone; the build key is gone from
    every user, the build user with it; imgpipe's connections outlived PermitRootLogin no."""
    image = ImageFiles(team_bake["build"] / "team-local.qcow2", tmp_path)
    try:
        assert b"PermitRootLogin no" in image.read("/etc/ssh/sshd_config")
        assert [n for n in image.listdir("/etc/ssh") if n.startswith("ssh_host_")] == []
        cloud = image.dump("/var/lib/cloud", tmp_path / "cloud")
        assert cloud.is_dir() and list(cloud.rglob("user-data.txt*")) == []
        assert files_containing(cloud, b"PRIVATE KEY") == []
        assert image.read("/home/deploy/.ssh/authorized_keys") is None
        assert image.read("/root/.ssh/authorized_keys") is None
        assert b"imgpipe-build" not in image.read("/etc/passwd")
        assert "imgpipe-build" not in image.listdir("/home")
        for rules in image.listdir("/etc/sudoers.d"):
            assert b"imgpipe-build" not in image.read(f"/etc/sudoers.d/{rules}"), rules
    finally:
        image.close()


def test_the_build_vm_cannot_reach_the_hosts_loopback(team_bake):
    """The network_probe role tried 10.0.2.2 and the package proxy (each must fail), and
    ran apt-get update through the proxy (must work); the listener saw nobody."""
    assert team_bake["listener"].accepted == 0
    port = team_bake["listener"].port
    assert f"package proxy refused 127.0.0.1:{port}" in team_bake["proc"].stderr
    log = (team_bake["build"] / "logs" / "local" / "ansible-provision.log").read_text()
    assert "TASK [network_probe : Packages still come in (through the proxy)]" in log
