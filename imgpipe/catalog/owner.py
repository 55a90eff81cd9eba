"""Which process owns a running build, and whether it is gone.

A pid alone lies (pids are reused), so the owner is the pid with its start time, in a
pid namespace, in one boot of one machine. Another machine's (or container's) build is
never judged from here: only its own host can tell that its process is gone."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    pid_start: str | None  # clock ticks after boot: /proc/PID/stat field 22
    boot: str  # kernel boot id
    pidns: str  # e.g. "pid:[4026531836]"
    machine: str  # /etc/machine-id, "" where there is none

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(
            host=socket.gethostname(),
            pid=pid,
            pid_start=process_start(pid),
            boot=_read("/proc/sys/kernel/random/boot_id"),
            pidns=_readlink("/proc/self/ns/pid"),
            machine=_read("/etc/machine-id"),
        )

    def is_gone(self) -> bool:
        """True only when this process can prove the owner no longer runs: it ran here (same
        host and pid namespace) and its pid is dead or reused, or this machine rebooted since."""
        here = Owner.current()
        if self.host != here.host:
            return False
        if self.boot != here.boot:
            return bool(self.machine) and self.machine == here.machine
        if self.pidns != here.pidns or self.pid_start is None:
            return False
        return process_start(self.pid) != self.pid_start


def process_start(pid: int) -> str | None:
    """A live process's start time (None for a dead pid or a zombie: a killed bake whose
    parent has not reaped it yet is gone all the same)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
