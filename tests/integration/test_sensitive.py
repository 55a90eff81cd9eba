"""A sensitive value never shows: not in stdout/stderr, log files, manifest, the
output dir, the Ansible private data dir after the run, nor any process's command
line during the run. Only inside the VM, where a role writes it on purpose."""

import json
import secrets
import threading
import time
from pathlib import Path

from tests.conftest import write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe

SPEC = """\
imgpipe: 1
name: canary
variables:
  api_token: {type: string, sensitive: true, required: true, description: Token the app needs}
provision:
  roles:
    - role: app
      vars: {app_token: "{{ api_token }}"}
targets:
  local: {builder: libvirt, disk_gb: 4}
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


def files_containing(root: Path, needle: bytes, skip=lambda p: False) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not skip(p) and needle in p.read_bytes()]


def test_sensitive_canary_never_leaks(imgpipe_env, base_image, tmp_path):
    canary = "canary-" + secrets.token_hex(12)
    spec = write(tmp_path / "spec" / "spec.yml", SPEC)
    write(
        tmp_path / "spec" / "roles" / "app" / "tasks" / "main.yml",
        """\
- name: Store the token where the app reads it
  ansible.builtin.copy:
    content: "{{ app_token }}\\n"
    dest: /etc/app-token
    mode: "0600"
  no_log: true
- name: A careless task that prints it (the log copy must still hide it)
  ansible.builtin.debug:
    msg: "token is {{ app_token }}"
""",
    )
    var_file = write(tmp_path / "secrets.yml", f"api_token: {canary}\n")
    var_file.chmod(0o600)
    watcher = ProcessWatcher(canary)
    watcher.start()
    try:
        proc = run_imgpipe(
            imgpipe_env, "bake", str(spec), "--var-file", str(var_file), "--output", str(tmp_path / "out")
        )
    finally:
        watcher.stop.set()
        watcher.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    build = build_dir_from(proc.stdout)
    assert watcher.samples > 100 and watcher.hits == []
    assert canary not in proc.stdout and canary not in proc.stderr
    assert "token is ***" in (build / "logs" / "local" / "ansible-provision.log").read_text()
    needle = canary.encode()
    assert files_containing(build, needle, skip=lambda p: p.suffix == ".qcow2") == []
    cache, state = Path(imgpipe_env["IMGPIPE_CACHE_DIR"]), Path(imgpipe_env["IMGPIPE_STATE_DIR"])
    assert files_containing(cache / "work", needle) == []
    assert files_containing(state, needle) == []
    assert leftovers(imgpipe_env, build.name) == NOTHING
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["builds"][0]["artifact_id"] == "canary-local.qcow2"
