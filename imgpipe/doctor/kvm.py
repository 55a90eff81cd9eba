"""The /dev/kvm checks: the device and who may use it, KVM or TCG and why, and the
permissions that cost libvirtd about a minute per VM start (FACTS.md)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from imgpipe.doctor.checks import (
    CPUINFO,
    KVM,
    SETUP_HOST,
    Check,
    Status,
    group_name,
    libvirtd_started_at,
    owner_mode,
    whoami,
)


def kvm_device(path: Path = KVM) -> Check:
    """/dev/kvm: present, who may use it, and whether this user can open it read-write."""
    name = str(KVM)
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check(
            name,
            Status.warn,
            f"{path} missing: no KVM on this host, builds run under TCG (about 10x slower)",
            "load the module (modprobe kvm_intel or kvm_amd), or enable nested virtualization for this VM",
        )
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as exc:
        group = group_name(st.st_gid)
        fix = (
            f"add your user to the group {group} (usermod -aG {group} USER, then log in again)"
            if stat.S_IMODE(st.st_mode) & 0o060 == 0o060 and group != "root"
            else f"chgrp kvm {path} && chmod 660 {path}, and add your user to the group kvm"
        )
        reason = exc.strerror or type(exc).__name__
        return Check(
            name, Status.warn, f"{owner_mode(st)}, not usable by {whoami()} ({reason}): builds use TCG", fix
        )
    return Check(name, Status.ok, f"{owner_mode(st)}, usable by {whoami()}")


def accelerator(kvm: Path = KVM, cpuinfo: Path = CPUINFO, requested: frozenset[str] = frozenset()) -> Check:
    """KVM or TCG, decided as imgpipe.builders.libvirt_domain.probe_accelerator decides it
    (CPU flags and /dev/kvm access, never libvirt's capabilities), with the reason.
    `requested`: the accelerators the specs ask for (auto, kvm, tcg)."""
    name = "accelerator"
    if requested and requested <= {"tcg"}:
        return Check(name, Status.ok, "TCG (the spec asks for accelerator: tcg)")
    try:
        flags = cpuinfo.read_text()
    except OSError:
        flags = ""
    has_flag = " vmx" in flags or " svm" in flags
    if not kvm.exists():
        why, fix = f"{kvm} missing", "load kvm_intel or kvm_amd, or enable nested virtualization for this VM"
    elif not os.access(kvm, os.R_OK | os.W_OK):
        why, fix = f"{kvm} not usable by {whoami()}", f"see the {KVM} line"
    elif not has_flag:
        why = "the CPU shows no vmx/svm flag (no nested virtualization: a KVM guest would hang)"
        fix = "enable nested virtualization for this VM, or bake on bare metal"
    else:
        return Check(name, Status.ok, f"KVM ({'vmx' if ' vmx' in flags else 'svm'}, {kvm} usable)")
    if "kvm" in requested:
        return Check(
            name,
            Status.fail,
            f"a spec asks for accelerator: kvm, but KVM does not work here: {why}",
            "set accelerator: auto (or tcg) in the target, or build on a host with working KVM",
        )
    return Check(name, Status.warn, f"TCG: {why}; builds about 10x slower", fix)


def _kvm_group_usable(st: os.stat_result) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    return (group_name(st.st_gid) == "kvm" and mode & 0o060 == 0o060) or mode & 0o006 == 0o006


def vm_start(
    kvm: Path = KVM,
    daemon: Callable[[], tuple[int, float] | None] = libvirtd_started_at,
) -> Check:
    """The condition that costs libvirtd about a minute per domain start (FACTS.md): /dev/kvm
    left root:root 0600 because no udev rule ran. libvirt's qemu user (in the group kvm) can't
    use it, so libvirtd's capability cache never validates and it re-probes qemu ~26 times
    per start, even under TCG. Detected as scripts/setup-host detects it (group kvm with
    group rw, as udev leaves it; world rw is as good); a libvirtd started before the fix still
    holds the stale cache until it is restarted."""
    name = "vm-start"
    try:
        st = kvm.stat()
    except FileNotFoundError:
        return Check(name, Status.ok, f"no {kvm}: libvirtd has no KVM state to re-probe")
    fix = f"chgrp kvm {kvm} && chmod 660 {kvm}, then restart libvirtd ({SETUP_HOST} does both)"
    if not _kvm_group_usable(st):
        return Check(
            name,
            Status.warn,
            f"{kvm} is {owner_mode(st)} (no udev rule ran): libvirtd re-probes qemu on every domain start, "
            "about a minute lost per VM, even under TCG",
            fix,
        )
    running = daemon()
    if running is not None and running[1] < st.st_ctime:
        pid, started = running
        return Check(
            name,
            Status.warn,
            f"{kvm} is {owner_mode(st)}, but libvirtd (pid {pid}) started before it got these permissions "
            f"({time.strftime('%H:%M', time.localtime(started))} < "
            f"{time.strftime('%H:%M', time.localtime(st.st_ctime))}): its qemu capability cache is stale, "
            "about a minute lost per VM start",
            "restart libvirtd",
        )
    return Check(name, Status.ok, f"{kvm} is {owner_mode(st)}: libvirtd's capability cache stays valid")
