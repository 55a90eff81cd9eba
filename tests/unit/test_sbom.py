"""The SBOM: dpkg-query's output parsed, written as CycloneDX JSON that the CycloneDX
schema accepts, and read back unchanged."""

import hashlib
import json
import shlex
import shutil
import subprocess

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from imgpipe.errors import SpecError
from imgpipe.sbom import DPKG_QUERY, Package, parse_dpkg_query, read_sbom, write_sbom

# As DPKG_QUERY prints it on bookworm (status, name, version, arch, source, source version).
DPKG_OUTPUT = """\
ii \tbash\t5.2.15-2+b8\tamd64\tbash\t5.2.15-2
ii \tlogin\t1:4.13+dfsg1-1+deb12u1\tamd64\tshadow\t1:4.13+dfsg1-1+deb12u1
rc \tnano\t7.2-1+deb12u1\tamd64\tnano\t7.2-1+deb12u1
ii \tlibssl3\t3.0.15-1~deb12u1\tamd64\topenssl\t3.0.15-1~deb12u1
ii \tcpp\t4:12.2.0-3\tamd64\tgcc-defaults\t1.203
hi \ttzdata\t2025b-0+deb12u1\tall\ttzdata\t2025b-0+deb12u1
iU \tcurl\t7.88.1-10+deb12u12\tamd64\tcurl\t7.88.1-10+deb12u12
"""


def test_parse_keeps_installed_packages_sorted_with_their_source():
    packages = parse_dpkg_query(DPKG_OUTPUT)
    assert [p.name for p in packages] == ["bash", "cpp", "libssl3", "login", "tzdata"]
    by_name = {p.name: p for p in packages}
    assert by_name["bash"] == Package("bash", "5.2.15-2+b8", "amd64", "bash", "5.2.15-2")
    assert by_name["login"] == Package(
        "login", "1:4.13+dfsg1-1+deb12u1", "amd64", "shadow", "1:4.13+dfsg1-1+deb12u1"
    )
    assert by_name["cpp"].source == "gcc-defaults" and by_name["cpp"].source_version == "1.203"
    assert by_name["tzdata"].architecture == "all"  # held ("hi") is installed too


def test_parse_rejects_a_line_it_cannot_split():
    with pytest.raises(ValueError, match="line 2"):
        parse_dpkg_query("ii \tbash\t5.2\tamd64\tbash\t5.2\nii bash 5.2 amd64\n")


def test_purl():
    login = Package("login", "1:4.13+dfsg1-1+deb12u1", "amd64", "shadow", "1:4.13+dfsg1-1+deb12u1")
    assert login.purl == "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bdeb12u1?arch=amd64"
    assert login.package_url("ubuntu").to_string().startswith("pkg:deb/ubuntu/login@")


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian host")
def test_dpkg_query_argv_survives_a_remote_shell():
    """SSH hands the remote shell one string: the ${...} fields must reach dpkg-query."""
    out = subprocess.run(["sh", "-c", shlex.join(DPKG_QUERY)], capture_output=True, text=True, check=True)
    packages = parse_dpkg_query(out.stdout)
    assert "dpkg" in {p.name for p in packages}
    assert all(p.version and p.architecture and p.source for p in packages)


def _sbom(tmp_path):
    path = tmp_path / "local.cdx.json"
    digest = write_sbom(
        path, parse_dpkg_query(DPKG_OUTPUT), image_name="web-local", spec_name="web", build_id="20261127T1-a"
    )
    return path, digest


def test_sbom_validates_against_the_cyclonedx_schema(tmp_path):
    path, digest = _sbom(tmp_path)
    text = path.read_text()
    doc = json.loads(text)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert JsonStrictValidator(SchemaVersion.from_version(doc["specVersion"])).validate_str(text) is None
    assert doc["specVersion"] in ("1.5", "1.6") and doc["serialNumber"].startswith("urn:uuid:")
    image = doc["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == (
        "operating-system",
        "web-local",
        "20261127T1-a",
    )
    assert doc["metadata"]["timestamp"]
    login = next(c for c in doc["components"] if c["name"] == "login")
    assert login["purl"] == "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bdeb12u1?arch=amd64"
    assert {"name": "imgpipe:deb:source", "value": "shadow"} in login["properties"]
    assert [p.name for p in tmp_path.iterdir()] == ["local.cdx.json"]  # no temp file left


def test_validator_rejects_a_broken_sbom(tmp_path):
    path, _ = _sbom(tmp_path)
    doc = json.loads(path.read_text())
    doc["components"][0]["type"] = "debian-package"
    del doc["components"][1]["name"]
    errors = JsonStrictValidator(SchemaVersion.from_version(doc["specVersion"])).validate_str(json.dumps(doc))
    assert errors is not None


def test_read_sbom_gives_back_the_packages(tmp_path):
    path, _ = _sbom(tmp_path)
    assert read_sbom(path) == {p.name: p for p in parse_dpkg_query(DPKG_OUTPUT)}


def test_read_sbom_keys_multiarch_packages_by_name_and_arch(tmp_path):
    path = tmp_path / "m.cdx.json"
    both = [Package("libc6", "2.36-9", arch, "glibc", "2.36-9") for arch in ("amd64", "i386")]
    write_sbom(path, both, image_name="x", spec_name="x", build_id="b")
    assert sorted(read_sbom(path)) == ["libc6:amd64", "libc6:i386"]


@pytest.mark.parametrize("content", ["{not json", '{"bomFormat": "SPDX"}', '["a"]'])
def test_read_sbom_names_the_file_it_cannot_read(tmp_path, content):
    path = tmp_path / "bad.cdx.json"
    path.write_text(content)
    with pytest.raises(SpecError, match="bad.cdx.json") as err:
        read_sbom(path)
    assert err.value.exit_code == 2
