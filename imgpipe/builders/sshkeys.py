"""Per-build SSH material: a client key pair and a host key imgpipe generates
itself, so the VM's host key is known before it boots and can be pinned."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.core.ssh import close_control_masters  # noqa: F401 - old journals name it here
from imgpipe.errors import BuildError, Interrupted, run_command

if TYPE_CHECKING:
    from imgpipe.core.ssh import SSHEndpoint


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
    name = host if port == 22 else f"[{host}]:{port}"  # ssh looks port 22 up by the bare host
    path.write_text(f"{name} {keytype} {blob}\n")
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


BUILD_USER = "imgpipe-build"
"""The temporary user imgpipe connects as: roles that turn off root login over SSH (most
hardening roles do) leave imgpipe's later connections working. The seal deletes it."""

# Every key type a distribution's first boot generates, so roles find the machine as they
# expect (hardening roles set permissions on each). ed25519 is the one imgpipe pins.
HOST_KEY_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ed25519", ()),
    ("ecdsa", ("-b", "256")),
    ("rsa", ("-b", "3072")),
)


def generate_host_keys(directory: Path, comment: str) -> dict[str, KeyPair]:
    """A full set of host keys, made here rather than in the guest: RSA under emulation
    would cost seconds of boot time. Returns them by type; "ed25519" is pinned."""
    keys = {}
    for keytype, options in HOST_KEY_TYPES:
        path = directory / f"host_{keytype}"
        run_command(["ssh-keygen", "-q", "-t", keytype, *options, "-N", "", "-C", comment, "-f", str(path)])
        keys[keytype] = KeyPair(path, path.with_suffix(".pub").read_text().strip())
    return keys


def build_vm_user_data(
    client: KeyPair, host_keys: dict[str, KeyPair], *, user: str = "root"
) -> dict[str, Any]:
    """cloud-config that gives a build VM imgpipe's host keys (the ed25519 one is pinned
    before boot) and authorizes the build key for `user`: root, or a temporary user with
    passwordless sudo that the seal deletes."""
    ssh_keys: dict[str, str] = {}
    for keytype, pair in host_keys.items():
        ssh_keys[f"{keytype}_private"] = pair.private.read_text()
        ssh_keys[f"{keytype}_public"] = pair.public
    config: dict[str, Any] = {
        "ssh_keys": ssh_keys,
        "ssh_deletekeys": True,
        "ssh_genkeytypes": sorted(host_keys),  # present already: generates nothing
        "disable_root": False,
    }
    if user == "root":
        config |= {"users": [], "ssh_authorized_keys": [client.public]}
    else:
        config["users"] = [
            {
                "name": user,
                "gecos": "imgpipe build user (removed by the seal)",
                "shell": "/bin/sh",
                "lock_passwd": True,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": [client.public],
            }
        ]
    return config


def wait_for_ssh(
    endpoint: SSHEndpoint,
    *,
    timeout: float,
    cancel: threading.Event,
    still_running: Callable[[], bool],
    describe: Callable[[], str],
    hint: str,
) -> None:
    """Wait until `ssh true` succeeds against the pinned host key. Raises Interrupted on
    cancel, and BuildError once `still_running()` says the VM is gone or the deadline
    passes, with `describe()` (e.g. a console tail) appended."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if cancel.is_set():
            raise Interrupted("interrupted while waiting for SSH")
        if ssh_banner(endpoint.host, endpoint.port):
            try:
                run_command([*endpoint.ssh_argv("-o", "ConnectTimeout=5"), "true"], timeout=30)
                return
            except BuildError as exc:
                last = str(exc)
        elif not still_running():
            raise BuildError(f"the build VM stopped before SSH answered\n{describe()}")
        cancel.wait(max(0.0, min(0.5, deadline - time.monotonic())))
    raise BuildError(
        f"SSH on {endpoint.host}:{endpoint.port} did not answer with the pinned host key within "
        f"{timeout:g} s{(': ' + last.splitlines()[-1]) if last else ''}\n{describe()}",
        hint=hint,
    )
