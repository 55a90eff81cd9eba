"""How imgpipe reaches a machine it booted (a build VM, a test VM): always with the host
key it pinned, never steered by the operator's ~/.ssh/config."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def ssh_path_option(name: str, path: Path) -> str:
    """`Name="path"`: ssh splits some option values (UserKnownHostsFile) on whitespace,
    so a cache dir with a space in it needs the quotes."""
    return f'{name}="{path}"'


@dataclass(frozen=True)
class SSHEndpoint:
    """How Ansible reaches the build VM; the host key is pinned in known_hosts."""

    host: str
    port: int
    user: str
    private_key: Path
    known_hosts: Path
    host_key_fingerprint: str
    authorized_key: str  # the build key's public half, removed again by the seal
    host_keys: tuple[str, ...] = ()  # public halves of the host keys imgpipe injected

    def ssh_argv(self, *options: str) -> list[str]:
        """ssh to the build VM. `-F /dev/null`: the operator's ~/.ssh/config (a ProxyJump,
        ControlPath or User there) must never steer build traffic."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            *options,
            "-p",
            str(self.port),
            "-i",
            str(self.private_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            ssh_path_option("UserKnownHostsFile", self.known_hosts),
            "-o",
            "BatchMode=yes",
            f"{self.user}@{self.host}",
        ]


def close_control_masters(path: str) -> None:
    """Cleaner: end the ControlPersist/ControlMaster ssh processes whose sockets are in
    `path`, so no ssh process outlives the build; then remove the directory."""
    from imgpipe.journal import remove_path

    for sock in Path(path).glob("*"):
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "imgpipe-build"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    remove_path(path)
