"""Boot a captured image in plain qemu, the way a user would: no libvirt, no
external kernel, the image opened read-only (-snapshot), ports on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

from imgpipe.builders.sshkeys import free_loopback_port


class BootedImage:
    def __init__(
        self, image: Path, workdir: Path, seed: Path | None = None, ssh_port: int | None = None
    ) -> None:
        self.ssh_port, self.http_port = ssh_port or free_loopback_port(), free_loopback_port()
        self.console = workdir / f"console-{self.http_port}.log"
        fwd = f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,hostfwd=tcp:127.0.0.1:{self.http_port}-:80"
        argv = [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "2",
            "-snapshot",
            "-display",
            "none",
            "-serial",
            f"file:{self.console}",
            "-monitor",
            "none",
            "-drive",
            f"file={image},if=virtio,format=qcow2",
            "-netdev",
            f"user,id=n0,{fwd}",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]
        if seed is not None:
            argv += ["-drive", f"file={seed},media=cdrom,readonly=on"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def http_get(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"qemu exited: {self.proc.stderr.read().decode()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/", timeout=5) as r:
                    return r.read().decode()
            except OSError as exc:
                last = exc
                time.sleep(1)
        raise AssertionError(f"nginx did not answer in {timeout} s ({last}); console:\n{self.tail()}")

    def console_host_keys(self, timeout: float) -> list[str]:
        """cloud-init prints the new host keys on the serial console: an out-of-band
        channel to pin them, as `get-console-output` is on a cloud."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            m = re.search(r"BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS", text, re.S)
            if m:
                return [ln.strip() for ln in m.group(1).splitlines() if ln.strip().startswith("ssh-")]
            time.sleep(1)
        raise AssertionError(f"no host keys on the console in {timeout} s; console:\n{self.tail()}")

    def tail(self) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
