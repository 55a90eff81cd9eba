"""URL sources: downloaded once over real HTTP (loopback), verified, cached by digest.
Requirements: ansible-galaxy installs roles from a git repository on disk."""

import hashlib
import subprocess

import pytest

from imgpipe.errors import BuildError
from imgpipe.events import Emitter, NullSink
from imgpipe.requirements import install_requirements
from imgpipe.sources.download import fetch_verified
from tests.conftest import write
from tests.loopback_http import serve_directory


@pytest.fixture
def http_files(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as (url, hits):
        yield root, url, hits


def test_download_verified_then_cached(http_files, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    root, base, hits = http_files
    payload = b"QFI\xfb" + b"\0" * 100_000
    (root / "base.qcow2").write_bytes(payload)
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    emit = Emitter(NullSink(), "t")
    first = fetch_verified(f"{base}/base.qcow2", digest, emit)
    assert first.read_bytes() == payload and len(hits) == 1
    second = fetch_verified(f"{base}/base.qcow2", digest, emit)
    assert second == first and len(hits) == 1  # no second download


def test_checksum_mismatch_keeps_nothing(http_files, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    root, base, _ = http_files
    (root / "base.qcow2").write_bytes(b"tampered")
    with pytest.raises(BuildError, match="checksum mismatch"):
        fetch_verified(f"{base}/base.qcow2", "sha256:" + "0" * 64, Emitter(NullSink(), "t"))
    assert list((tmp_path / "cache" / "downloads").glob("*.img")) == []
    assert list((tmp_path / "cache" / "downloads").glob(".*partial")) == []


def test_requirements_from_git_repo_on_disk(tmp_path):
    repo = tmp_path / "team-role"
    write(repo / "tasks" / "main.yml", "- ansible.builtin.debug: {msg: hi}\n")
    write(repo / "meta" / "main.yml", "galaxy_info: {role_name: team_role, author: t, description: t}\n")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "role"],
    ):
        subprocess.run(cmd, cwd=repo, check=True)
    req = write(tmp_path / "requirements.yml", f"- src: git+file://{repo}\n  name: team_role\n")
    roles_dir, _ = install_requirements(req, tmp_path / "galaxy")
    assert (roles_dir / "team_role" / "tasks" / "main.yml").is_file()
