"""Domain XML is accepted by libvirt (test:/// driver) and keeps traffic on loopback."""

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from imgpipe.builders.libvirt_domain import Accelerator, DomainPlan, domain_xml, probe_accelerator


def plan(accel=Accelerator.tcg):
    return DomainPlan(
        "imgpipe-b1-local",
        "b1",
        "local",
        accel,
        1024,
        2,
        Path("/tmp/d.qcow2"),
        Path("/tmp/seed.iso"),
        Path("/tmp/console.log"),
        40022,
    )


def test_xml_defines_on_libvirt_test_driver():
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(domain_xml(plan()))
        assert dom.name() == "imgpipe-b1-local"
        dom.undefine()
    finally:
        conn.close()


def test_tcg_domain_type_and_loopback_only_forward():
    root = ET.fromstring(domain_xml(plan()))
    assert root.get("type") == "qemu"
    args = [a.get("value") for a in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22" in args  # no guest-to-host traffic
    assert root.find("devices/interface") is None  # no libvirt network, no NAT bridge
    assert ET.fromstring(domain_xml(plan(Accelerator.kvm))).get("type") == "kvm"


def test_seed_is_read_only():
    root = ET.fromstring(domain_xml(plan()))
    seed = [d for d in root.iter("disk") if d.find("source").get("file") == "/tmp/seed.iso"]
    assert seed and seed[0].find("readonly") is not None


@pytest.mark.parametrize(
    "flags,kvm_ok,expected",
    [
        ("fpu vmx sse", True, Accelerator.kvm),
        ("fpu sse", True, Accelerator.tcg),
        ("fpu svm", False, Accelerator.tcg),
    ],
)
def test_auto_probe(monkeypatch, flags, kvm_ok, expected):
    monkeypatch.setattr(Path, "read_text", lambda self: f"flags\t: {flags}\n")
    monkeypatch.setattr("os.access", lambda *_: kvm_ok)
    assert probe_accelerator(Accelerator.auto) == expected
    assert probe_accelerator(Accelerator.tcg) == Accelerator.tcg
