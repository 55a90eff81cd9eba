"""A team's spec: a role from a directory outside this repository (roles_path),
a role of its own beside the spec, and a sensitive variable. One bake, two checks:
the outside role is applied as it is, and the secret never shows anywhere."""

import json
import secrets
import threading
import time
from pathlib import Path

import pytest

from imgpipe.roles import tree_digest
from tests.conftest import write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe

SPEC = """\
imgpipe: 1
name: team
variables:
  api_token: {{type: string, sensitive: true, required: true, description: Token the app needs}}
provision:
  roles_path: [{outside}]
  roles:
    - marker
    - role: app
      vars: {{app_token: "{{{{ api_token }}}}"}}
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
    watcher = ProcessWatcher(canary)
    watcher.start()
    try:
        proc = run_imgpipe(
            imgpipe_env, "bake", str(spec), "--var-file", str(var_file), "--output", str(tmp / "out")
        )
    finally:
        watcher.stop.set()
        watcher.join()
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {
        "proc": proc,
        "build": build_dir_from(proc.stdout),
        "canary": canary,
        "watcher": watcher,
        "digest": digest,
        "outside": outside_roles,
        "env": imgpipe_env,
    }


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
