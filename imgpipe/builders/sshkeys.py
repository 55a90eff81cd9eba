"""Per-build SSH material: a client key pair and a host key imgpipe generates
itself, so the VM's host key is known before it boots and can be pinned."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from imgpipe.errors import run_command


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str  # "ssh-ed25519 AAAA... comment"

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public)


def key_fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a "type base64 [comment]" public key line."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def generate_ed25519(path: Path, comment: str) -> KeyPair:
    run_command(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return KeyPair(path, path.with_suffix(".pub").read_text().strip())


def write_known_hosts(path: Path, host: str, port: int, host_key: KeyPair) -> None:
    keytype, blob = host_key.public.split()[:2]
    path.write_text(f"[{host}]:{port} {keytype} {blob}\n")
    path.chmod(0o600)


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssh_banner(host: str, port: int, timeout: float = 2.0) -> bool:
    """True once an SSH server answers; cheap to poll before spawning ssh."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_until(deadline: float, interval: float) -> None:
    time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
