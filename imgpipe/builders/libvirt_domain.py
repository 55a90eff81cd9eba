"""Domain XML for a build VM and the accelerator probe. Kept apart from the
builder so unit tests can check the XML against libvirt's test:/// driver."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from xml.sax.saxutils import quoteattr


class Accelerator(StrEnum):
    auto = "auto"
    kvm = "kvm"
    tcg = "tcg"


def probe_accelerator(requested: Accelerator) -> Accelerator:
    """libvirt advertises kvm even where it hangs, so look at the CPU flags ourselves."""
    if requested != Accelerator.auto:
        return requested
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return Accelerator.tcg
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK) and (" vmx" in flags or " svm" in flags)
    return Accelerator.kvm if usable else Accelerator.tcg


@dataclass(frozen=True)
class DomainPlan:
    name: str
    build_id: str
    target: str
    accelerator: Accelerator
    memory_mb: int
    cpus: int
    disk: Path
    seed: Path
    console_log: Path
    ssh_port: int


def domain_xml(plan: DomainPlan) -> str:
    dom_type = "kvm" if plan.accelerator == Accelerator.kvm else "qemu"
    uid, gid = os.getuid(), os.getgid()
    # restrict=on: the guest reaches nothing by itself (slirp maps 10.0.2.2 to the host's
    # loopback otherwise); packages come through the SSH-forwarded proxy (egress_tunnel).
    netdev = f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{plan.ssh_port}-:22"
    return f"""<domain type='{dom_type}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{plan.name}</name>
  <metadata>
    <imgpipe:build xmlns:imgpipe='https://imgpipe.invalid/xmlns/build/1'
      build_id={quoteattr(plan.build_id)} target={quoteattr(plan.target)}/>
  </metadata>
  <memory unit='MiB'>{plan.memory_mb}</memory>
  <vcpu>{plan.cpus}</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <!-- cache=unsafe ignores guest flushes (dpkg fsyncs a lot); the disk is
         disposable until a clean power-off, which writes everything out -->
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe' discard='unmap'/>
      <source file={quoteattr(str(plan.disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <!-- the NoCloud seed as a read-only virtio disk: cloud kernels lack SATA/AHCI -->
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file={quoteattr(str(plan.seed))}/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <serial type='file'>
      <source path={quoteattr(str(plan.console_log))}/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+{uid}:+{gid}</label></seclabel>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value={quoteattr(netdev)}/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
"""
