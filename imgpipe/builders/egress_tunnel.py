"""The build VM's only way out. Its user-mode network is restricted (`restrict=on`): the
guest reaches nothing on the host (slirp would otherwise map 10.0.2.2 to the host's
loopback) nor on the network. For packages it gets an HTTP proxy at 127.0.0.1:GUEST_PORT
inside the guest, forwarded over SSH (`ssh -R`) to imgpipe's EgressProxy on the host,
which refuses this host's own addresses and link-local ones (a cloud's metadata service).

The guest side is three files that cloud-init writes at first boot (apt's proxy, the
proxy environment for every login, sudo keeping it) and imgpipe removes again after
provisioning, so no image carries them."""

from __future__ import annotations

import shlex
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.core.ssh import close_control_masters
from imgpipe.errors import BuildError, run_command

if TYPE_CHECKING:
    from imgpipe.builders.egress import EgressProxy
    from imgpipe.core.ssh import SSHEndpoint
    from imgpipe.journal import Resources

GUEST_PORT = 43128
PROXY_URL = f"http://127.0.0.1:{GUEST_PORT}/"
APT_CONF = "/etc/apt/apt.conf.d/00imgpipe-egress"
SUDOERS = "/etc/sudoers.d/imgpipe-egress"
ENVIRONMENT = "/etc/environment"
_ENV_NAMES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
_ENV_LINES = [
    f"{name}={value}"
    for name, value in (
        ("http_proxy", PROXY_URL),
        ("https_proxy", PROXY_URL),
        ("HTTP_PROXY", PROXY_URL),
        ("HTTPS_PROXY", PROXY_URL),
        ("no_proxy", "localhost,127.0.0.1,::1"),
        ("NO_PROXY", "localhost,127.0.0.1,::1"),
    )
]


def guest_write_files() -> list[dict[str, Any]]:
    """cloud-init `write_files` that point the guest's tools at the forwarded proxy."""
    return [
        {
            "path": APT_CONF,
            "permissions": "0644",
            "content": f'Acquire::http::Proxy "{PROXY_URL}";\nAcquire::https::Proxy "{PROXY_URL}";\n',
        },
        {
            "path": SUDOERS,
            "permissions": "0440",
            "content": f'Defaults env_keep += "{" ".join(_ENV_NAMES)}"\n',
        },
        {"path": ENVIRONMENT, "append": True, "content": "".join(f"{line}\n" for line in _ENV_LINES)},
    ]


def guest_cleanup_script() -> str:
    """Shell (run as root) that removes exactly what guest_write_files() added."""
    delete_env = " ".join(f"-e '\\#^{line}$#d'" for line in _ENV_LINES)
    return f"rm -f {APT_CONF} {SUDOERS} && sed -i {delete_env} {ENVIRONMENT}"


# Live proxies of this process by port, so the journal's cleaner (which gets only JSON
# arguments) can close one; after a kill -9 there is nothing left to close.
_PROXIES: dict[int, EgressProxy] = {}
_LOCK = threading.Lock()


def close_proxy(port: int) -> None:
    """Cleaner: stop this process's egress proxy on `port` (absent is fine)."""
    with _LOCK:
        proxy = _PROXIES.pop(port, None)
    if proxy is not None:
        proxy.close()


def open_egress(endpoint: SSHEndpoint, resources: Resources, on_refused: Any = None) -> Path:
    """Start the host-side proxy and the SSH remote forward to it, both journaled; returns
    the tunnel's control socket directory. `ssh -f` with ExitOnForwardFailure returns
    once the forward is in place, so the first apt call finds it."""
    from imgpipe.builders.egress import EgressProxy

    proxy = EgressProxy(on_refused=on_refused)
    proxy.start()
    with _LOCK:
        _PROXIES[proxy.port] = proxy
    resources.track("egress-proxy", close_proxy, port=proxy.port)
    control_dir = Path(tempfile.mkdtemp(prefix="imgpipe-egress-"))  # short: sockets have a ~100 byte limit
    resources.track("egress-tunnel", close_control_masters, path=str(control_dir))
    argv = endpoint.ssh_argv(
        "-f",
        "-N",
        "-M",
        "-S",
        str(control_dir / "tunnel"),
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ServerAliveInterval=15",
        "-R",
        f"127.0.0.1:{GUEST_PORT}:127.0.0.1:{proxy.port}",
    )
    try:
        run_command(argv, timeout=60)
    except BuildError as exc:
        raise BuildError(f"could not forward the package proxy into the build VM: {exc}") from None
    return control_dir


def close_egress(endpoint: SSHEndpoint, resources: Resources) -> None:
    """After provisioning: remove the guest's proxy settings (a new SSH login, which the
    seal still allows), then end the tunnel and the proxy."""
    remote = f"sudo -n sh -c {shlex.quote(guest_cleanup_script())}"  # ssh hands one string to a shell
    run_command([*endpoint.ssh_argv(), remote], timeout=120)
    resources.close_kind("egress-tunnel")
    resources.close_kind("egress-proxy")
