"""examples/web.yml end to end: the README's bake command produces a qcow2 that
boots on its own in plain qemu, serves nginx, and carries no build identity. The bake is
the session's `web_build` (tests/integration/conftest.py), shared with test_lineage."""

import json
import subprocess

from imgpipe.capture import sha256_file
from tests.integration.conftest import NOTHING, leftovers
from tests.integration.imagefs import ImageFiles
from tests.integration.vmboot import BootedImage


def test_manifest_is_packer_shaped_with_imgpipe_fields(web_build):
    m, build = web_build["manifest"], web_build["dir"]
    assert m["last_run_uuid"] == build.name
    (entry,) = m["builds"]
    assert entry["name"] == "local" and entry["builder_type"] == "imgpipe.libvirt"
    assert entry["artifact_id"] == "web-local.qcow2"
    assert [f["name"] for f in entry["files"]] == ["web-local.qcow2"]
    assert isinstance(entry["build_time"], int)
    ours = m["imgpipe"]
    assert ours["spec"]["name"] == "web" and ours["ansible_core"]
    (role,) = ours["roles"]
    assert role["name"] == "nginx" and len(role["sha256"]) == 64
    timings = ours["targets"]["local"]["timings"]
    for stage in ("source", "boot_to_ssh", "provision", "seal", "shutdown", "capture", "total"):
        assert timings[stage] >= 0, stage
    assert (build / "logs" / "local" / "ansible-provision.log").read_text().count("nginx : Install nginx")


def test_second_bake_reuses_cached_base(web_build):
    source = web_build["manifest"]["imgpipe"]["targets"]["local"]["source"]
    assert source["kind"] == "bootstrap" and source["cached"] is True
    assert web_build["base_unchanged"]


def test_image_is_standalone_with_checksum(web_build):
    image = web_build["dir"] / "web-local.qcow2"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert info["format"] == "qcow2" and "backing-filename" not in info
    assert f"{sha256_file(image)}  web-local.qcow2" in (web_build["dir"] / "SHA256SUMS").read_text()


def test_nothing_left_behind(web_build):
    assert leftovers(web_build["env"], web_build["dir"].name) == NOTHING
    assert not list(web_build["dir"].glob(".*.partial"))


def test_image_boots_alone_and_serves_nginx(web_build, tmp_path):
    vm = BootedImage(web_build["dir"] / "web-local.qcow2", tmp_path)
    try:
        page = vm.http_get(timeout=600)
    finally:
        vm.close()
    assert "Hello from imgpipe" in page and web_build["dir"].name in page


def test_the_captured_image_carries_no_build_identity(web_build, tmp_path):
    """Read the image's files without booting it: what first boot would rewrite anyway
    must already be gone, so nothing of the build VM depends on cloud-init running."""
    build_vm = web_build["manifest"]["imgpipe"]["targets"]["local"]["build_vm"]
    image = ImageFiles(web_build["dir"] / "web-local.qcow2", tmp_path)
    try:
        assert image.read("/etc/hostname") == b"localhost\n"
        assert b"imgpipe-local" not in image.read("/etc/hosts")
        assert image.read("/etc/machine-id") == b""
        assert image.read("/var/lib/systemd/random-seed") is None
        assert not image.listdir("/var/log/journal"), "a journal dir named after the build's machine-id"
        assert build_vm["machine_id"] not in (image.listdir("/var/log/journal") or [])
        assert [n for n in image.listdir("/etc/ssh") if n.startswith("ssh_host_")] == []
        assert image.read("/root/.ssh/authorized_keys") is None
        assert b"imgpipe-build" not in image.read("/etc/passwd")
        assert not image.listdir("/var/lib/cloud/instances")
        # the build network's package proxy settings went with the build
        assert image.read("/etc/apt/apt.conf.d/00imgpipe-egress") is None
        assert image.read("/etc/sudoers.d/imgpipe-egress") is None
        assert b"43128" not in (image.read("/etc/environment") or b"")
    finally:
        image.close()


def test_the_image_was_tested_on_a_fresh_boot(web_build):
    verify = web_build["manifest"]["imgpipe"]["targets"]["local"]["verify"]
    assert verify["ok"] and verify["tests"]["testinfra"] == ["tests/test_web.py"]
    assert set(verify["checks"].values()) == {"passed"}, verify["checks"]
    assert "2 passed" in (web_build["dir"] / "logs" / "local" / "verify" / "testinfra.log").read_text()


def test_the_sbom_lists_the_installed_packages_and_validates(web_build):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    sbom = web_build["manifest"]["imgpipe"]["targets"]["local"]["sbom"]
    path = web_build["dir"] / sbom["file"]
    text = path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    components = {c["name"]: c for c in json.loads(text)["components"]}
    assert {"nginx-light", "openssh-server", "cloud-init", "linux-image-cloud-amd64"} <= set(components)
    assert components["nginx-light"]["purl"].startswith("pkg:deb/debian/nginx-light@")
    assert sbom["packages"] == len(components)
    assert f"{sha256_file(path)}  {sbom['file']}" in (web_build["dir"] / "SHA256SUMS").read_text()
