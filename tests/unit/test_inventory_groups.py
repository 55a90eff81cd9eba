"""Playbooks written for Packer say `hosts: default`: the build host is in that group, and
ansible-core itself (not our reading of the inventory) says the play reaches it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from imgpipe.core.ssh import SSHEndpoint
from imgpipe.provision import BUILD_GROUP, inventory


def _list_hosts(tmp_path: Path, hosts: str) -> subprocess.CompletedProcess[str]:
    endpoint = SSHEndpoint(
        host="127.0.0.1",
        port=2222,
        user="root",
        private_key=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts",
        host_key_fingerprint="SHA256:x",
        authorized_key="ssh-ed25519 AAAA build",
    )
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory("local", endpoint)))
    (tmp_path / "play.yml").write_text(f"- hosts: {hosts}\n  tasks: []\n")
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "hosts.yml"),
            str(tmp_path / "play.yml"),
            "--list-hosts",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_hosts_default_play_reaches_the_build_host(tmp_path):
    assert BUILD_GROUP == "default"
    proc = _list_hosts(tmp_path, "default")
    assert proc.returncode == 0, proc.stderr
    assert "hosts (1):" in proc.stdout and "local" in proc.stdout.split("hosts (1):", 1)[1], proc.stdout


def test_the_target_name_still_reaches_it(tmp_path):
    proc = _list_hosts(tmp_path, "local")
    assert proc.returncode == 0 and "hosts (1):" in proc.stdout, proc.stdout + proc.stderr
