"""`imgpipe diff A B` over two fake build directories, its errors, and the Debian
version order it relies on."""

import json
import shutil
import subprocess
from functools import cmp_to_key

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgpipe.debversion import compare_versions
from imgpipe.manifest import TargetRecord, write_manifest
from imgpipe.sbom import Package, write_sbom
from tests.conftest import IMGPIPE, REPO

# --- Debian version order -------------------------------------------------------------------

ORDERED = [  # (lower, higher)
    ("1.0~rc1", "1.0"),
    ("1.0~~", "1.0~"),
    ("2.0", "1:0.9"),
    ("1.2-1", "1.2-1+deb12u1"),
    ("1.18.0-6.1+deb12u3", "1.22.1-9"),
    ("3.0.11-1~deb12u2", "3.0.11-1"),
    ("1.0", "1.0a"),
    ("1.0a", "1.0+"),
    ("1.9", "1.10"),
    ("5.2.15-2", "5.2.15-2+b8"),
    ("2.36-9+deb12u9", "2.36-9+deb12u10"),
    ("0:1.0-1", "1:1.0-1"),
]
EQUAL = [("1.0", "1.0-0"), ("1:1.0", "1:1.0"), ("0:2.1", "2.1"), ("1.01", "1.1")]


@pytest.mark.parametrize(("lower", "higher"), ORDERED)
def test_debian_version_order(lower, higher):
    assert compare_versions(lower, higher) == -1
    assert compare_versions(higher, lower) == 1


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_debian_versions_equal(a, b):
    assert compare_versions(a, b) == 0


def test_sorting_with_tilde_first():
    versions = ["1.0", "1.0~rc1", "1.0+deb1", "1.0~~", "1.0-1", "1:0.1"]
    assert sorted(versions, key=cmp_to_key(compare_versions)) == [
        "1.0~~",
        "1.0~rc1",
        "1.0",
        "1.0-1",  # upstream 1.0 sorts before upstream 1.0+deb1, whatever the revision
        "1.0+deb1",
        "1:0.1",
    ]


def test_bad_epoch_is_an_error():
    with pytest.raises(ValueError, match="epoch"):
        compare_versions("x:1.0", "1.0")


_part = st.text("0123456789abz.+~", max_size=6)
_versions = st.builds(
    lambda epoch, first, rest, revision: f"{epoch}{first}{rest}{revision}",
    st.sampled_from(["", "1:", "0:", "12:"]),
    st.sampled_from("0123456789"),
    _part,
    st.one_of(st.just(""), _part.filter(bool).map(lambda r: f"-{r}")),
)


def _dpkg_compare(a: str, b: str) -> int:
    def holds(op: str) -> bool:
        return subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode == 0

    return -1 if holds("lt") else 0 if holds("eq") else 1


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg to compare with")
@settings(max_examples=150, deadline=None)
@given(_versions, _versions)
def test_order_matches_dpkg(a, b):
    assert compare_versions(a, b) == _dpkg_compare(a, b)


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg to compare with")
def test_table_matches_dpkg():
    for lower, higher in ORDERED:
        assert _dpkg_compare(lower, higher) == -1, (lower, higher)
    for a, b in EQUAL:
        assert _dpkg_compare(a, b) == 0, (a, b)


# --- imgpipe diff ---------------------------------------------------------------------------

BASE = [
    Package("bash", "5.2.15-2+b8", "amd64", "bash", "5.2.15-2"),
    Package("libssl3", "3.0.11-1~deb12u2", "amd64", "openssl", "3.0.11-1~deb12u2"),
    Package("nano", "7.2-1", "amd64", "nano", "7.2-1"),
    Package("login", "1:4.13+dfsg1-1", "amd64", "shadow", "1:4.13+dfsg1-1"),
]
ROLES_A = [{"name": "base", "path": "/p/roles/base", "sha256": "a" * 64}, {"name": "web", "sha256": "c" * 64}]
ROLES_B = [{"name": "base", "path": "/p/roles/base", "sha256": "b" * 64}, {"name": "web", "sha256": "c" * 64}]


def make_build(directory, build_id, packages, *, roles, source_digest="sha256:1111", sbom=True):
    """A build output directory as the bake writes it: manifest.json plus one SBOM per target."""
    directory.mkdir(parents=True)
    record = TargetRecord(
        target="local", builder_type="libvirt", ok=True, build_time=1, source={"digest": source_digest}
    )
    inputs = {"version": "0.1.0", "ansible_core": "2.17.0", "roles": roles}
    spec = {"name": "web", "path": "/p/web.yml"}
    manifest = directory / "manifest.json"
    write_manifest(manifest, run_uuid=build_id, spec=spec, targets=[record], inputs=inputs)
    if sbom:
        name = "web-local.cdx.json"
        digest = write_sbom(
            directory / name, packages, image_name="web-local", spec_name="web", build_id=build_id
        )
        doc = json.loads(manifest.read_text())
        doc["imgpipe"]["targets"]["local"]["sbom"] = {
            "file": name,
            "sha256": digest,
            "packages": len(packages),
        }
        manifest.write_text(json.dumps(doc))
    return directory


@pytest.fixture
def two_builds(tmp_path):
    newer = [p for p in BASE if p.name != "nano"]
    newer[1] = Package("libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", "3.0.15-1~deb12u1")
    newer.append(Package("curl", "7.88.1-10+deb12u12", "amd64", "curl", "7.88.1-10+deb12u12"))
    a = make_build(tmp_path / "web" / "A1", "A1", BASE, roles=ROLES_A)
    b = make_build(tmp_path / "web" / "B2", "B2", newer, roles=ROLES_B, source_digest="sha256:2222")
    return a, b


def imgpipe(*args):
    return subprocess.run([*IMGPIPE, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_diff_text(two_builds):
    a, b = two_builds
    out = imgpipe("diff", str(a), str(b / "manifest.json"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "target local:" in lines
    assert "  + curl 7.88.1-10+deb12u12" in lines
    assert "  - nano 7.2-1" in lines
    assert "  ~ libssl3 3.0.11-1~deb12u2 -> 3.0.15-1~deb12u1" in lines
    assert "  inputs: source.digest: sha256:1111 -> sha256:2222" in lines
    assert f"inputs: role base: sha256 {'a' * 12} -> {'b' * 12}" in lines
    assert not [line for line in lines if "bash" in line or "login" in line or "role web" in line]


def test_diff_json(two_builds):
    a, b = two_builds
    out = imgpipe("diff", "--json", str(a), str(b))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert sorted(doc) == ["a", "b", "inputs", "only_in_a", "only_in_b", "roles", "targets", "v"]
    assert doc["v"] == 1 and doc["a"]["build_id"] == "A1" and doc["b"]["build_id"] == "B2"
    assert doc["inputs"] == []
    assert doc["roles"] == [
        {"name": "base", "change": "changed", "old_sha256": "a" * 64, "new_sha256": "b" * 64}
    ]
    assert doc["targets"] == {
        "local": {
            "missing_sbom": [],
            "added": [{"name": "curl", "version": "7.88.1-10+deb12u12"}],
            "removed": [{"name": "nano", "version": "7.2-1"}],
            "upgraded": [{"name": "libssl3", "old": "3.0.11-1~deb12u2", "new": "3.0.15-1~deb12u1"}],
            "downgraded": [],
            "source": [{"field": "source.digest", "old": "sha256:1111", "new": "sha256:2222"}],
        }
    }


def test_diff_reverse_shows_a_downgrade(two_builds):
    a, b = two_builds
    out = imgpipe("diff", str(b), str(a))
    assert out.returncode == 0, out.stderr
    assert "  ~ libssl3 3.0.15-1~deb12u1 -> 3.0.11-1~deb12u2 (downgrade)" in out.stdout.splitlines()


def test_diff_of_a_build_with_itself(two_builds):
    a, _ = two_builds
    out = imgpipe("diff", str(a), str(a))
    assert out.returncode == 0, out.stderr
    assert "  no package or source changes" in out.stdout
    assert "inputs: same imgpipe, ansible-core, spec path and roles" in out.stdout


def _edit_targets(build, edit):
    doc = json.loads((build / "manifest.json").read_text())
    edit(doc["imgpipe"]["targets"])
    (build / "manifest.json").write_text(json.dumps(doc))


def test_diff_says_when_a_target_has_no_sbom(tmp_path):
    """Target `other` failed in build B, so B recorded no SBOM for it; `extra` is only in B."""
    a = make_build(tmp_path / "A1", "A1", BASE, roles=ROLES_A)
    b = make_build(tmp_path / "B2", "B2", BASE, roles=ROLES_A)
    _edit_targets(a, lambda targets: targets.update(other=targets["local"]))
    _edit_targets(
        b, lambda targets: targets.update(other={"ok": False, "source": {}}, extra=targets["local"])
    )
    out = imgpipe("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[lines.index("target other:") + 1] == "  no SBOM in build b (B2)"
    assert "target extra: only in build b" in lines
    doc = json.loads(imgpipe("diff", "--json", str(a), str(b)).stdout)
    assert doc["targets"]["other"]["missing_sbom"] == ["b"] and doc["only_in_b"] == ["extra"]


def _error_cases(tmp_path, a):
    not_json = tmp_path / "broken"
    not_json.mkdir()
    (not_json / "manifest.json").write_text("{oops")
    no_sbom = make_build(tmp_path / "nosbom", "N1", BASE, roles=ROLES_A, sbom=False)
    bad_sbom = make_build(tmp_path / "badsbom", "S1", BASE, roles=ROLES_A)
    (bad_sbom / "web-local.cdx.json").write_text("[]")
    gone_sbom = make_build(tmp_path / "gonesbom", "G1", BASE, roles=ROLES_A)
    (gone_sbom / "web-local.cdx.json").unlink()
    return {
        "no-such-dir": (tmp_path / "nope", "nope: not a build"),
        "empty-dir": (tmp_path, f"{tmp_path}: not a build"),
        "not-json": (not_json, "broken/manifest.json: cannot read the manifest"),
        "not-imgpipe": (_write(tmp_path / "other.json", '{"builds": []}'), "not an imgpipe manifest"),
        "no-sbom": (no_sbom, "nosbom/manifest.json: this build recorded no SBOM"),
        "sbom-tampered": (bad_sbom, "badsbom/web-local.cdx.json: target local's SBOM does not match"),
        "sbom-missing": (gone_sbom, "gonesbom/web-local.cdx.json: cannot read target local's SBOM"),
    }


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case",
    ["no-such-dir", "empty-dir", "not-json", "not-imgpipe", "no-sbom", "sbom-tampered", "sbom-missing"],
)
def test_diff_bad_input_is_a_clear_error(tmp_path, case):
    a = make_build(tmp_path / "good", "A1", BASE, roles=ROLES_A)
    bad, message = _error_cases(tmp_path, a)[case]
    out = imgpipe("diff", str(a), str(bad))
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_unreadable_sbom_content_is_a_clear_error(tmp_path):
    a = make_build(tmp_path / "good", "A1", BASE, roles=ROLES_A)
    b = make_build(tmp_path / "bad", "B1", BASE, roles=ROLES_A)
    doc = json.loads((b / "manifest.json").read_text())
    doc["imgpipe"]["targets"]["local"]["sbom"]["sha256"] = ""  # skip the digest check, reach the parser
    (b / "manifest.json").write_text(json.dumps(doc))
    (b / "web-local.cdx.json").write_text('{"bomFormat": "CycloneDX", "components": "nope"}')
    out = imgpipe("diff", str(a), str(b))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "bad/web-local.cdx.json: not a readable CycloneDX JSON SBOM" in out.stderr
