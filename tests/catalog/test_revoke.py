"""`imgpipe revoke` through the CLI for local image files, on SQLite and PostgreSQL: the
channel symlinks move back to the previous good build, a REVOKED note lands beside the
image, `show` and `builds` say it is revoked, a dry run changes nothing, and bad input is
one clear line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.catalog.test_bake_history import bake, imgpipe, spec


def _builds(tmp: Path, url: str) -> list[dict]:
    return json.loads(imgpipe(tmp, url, "builds", "--json").stdout)["builds"]


def _link(tmp: Path, channel: str) -> Path:
    return tmp / "out" / f"hist@{channel}"


def _two_builds_on_stable(tmp: Path, url: str) -> tuple[dict, dict]:
    """Two good builds, stable moved from the first to the second (latest follows too)."""
    path = spec(tmp)
    assert bake(tmp, url, path).returncode == 0
    spec(tmp, token="another")
    assert bake(tmp, url, path).returncode == 0
    second, first = _builds(tmp, url)
    for build in (first, second):
        done = imgpipe(tmp, url, "promote", "hist", build["id"], "--channel", "stable")
        assert done.returncode == 0, done.stderr
    assert os.readlink(_link(tmp, "stable")) == f"hist/{second['id']}"
    return first, second


def test_revoke_moves_the_symlinks_back_and_leaves_a_note(tmp_path, catalog_url):
    first, second = _two_builds_on_stable(tmp_path, catalog_url)

    done = imgpipe(tmp_path, catalog_url, "revoke", second["id"][:18], "--reason", "ships a bad kernel")

    assert done.returncode == 0, done.stdout + done.stderr
    for channel in ("stable", "latest"):
        assert os.readlink(_link(tmp_path, channel)) == f"hist/{first['id']}"
        assert (_link(tmp_path, channel) / "hist-local.qcow2").is_file()
        assert f"roll back: channel {channel} of hist: done: {second['id']} -> {first['id']}" in done.stdout
    note = (tmp_path / "out" / "hist" / second["id"] / "REVOKED").read_text()
    assert "reason: ships a bad kernel" in note and f"build:  {second['id']}" in note
    assert "by:     " in note and "@" in note and "when:   20" in note
    assert not (tmp_path / "out" / "hist" / first["id"] / "REVOKED").exists()

    shown = imgpipe(tmp_path, catalog_url, "show", second["id"])
    assert shown.stdout.splitlines()[1].startswith("  revoked (ships a bad kernel, by "), shown.stdout
    listed = imgpipe(tmp_path, catalog_url, "builds").stdout
    assert "  revoked (ships a bad kernel, by " in listed
    assert listed.count("revoked (") == 1
    as_json = json.loads(imgpipe(tmp_path, catalog_url, "show", second["id"], "--json").stdout)["build"]
    assert as_json["revoked"]["reason"] == "ships a bad kernel" and "@" in as_json["revoked"]["by"]
    assert {b["id"]: b["revoked"] for b in _builds(tmp_path, catalog_url)}[first["id"]] is None

    refused = imgpipe(tmp_path, catalog_url, "promote", "hist", second["id"], "--channel", "stable")
    assert refused.returncode == 2 and "is revoked (ships a bad kernel)" in refused.stderr

    again = imgpipe(tmp_path, catalog_url, "revoke", second["id"], "--reason", "another reason", "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert set(doc) == {"v", "build", "reason", "by", "dry_run", "ok", "revoked", "notes", "recovered"} | {
        "actions",
        "problems",
    }
    assert set(doc["actions"][0]) == {"step", "build", "subject", "why", "status", "detail"}
    assert doc["ok"] and doc["revoked"] == [second["id"]]
    assert [a["status"] for a in doc["actions"]] == ["skipped", "done"]  # the catalog kept it; the note
    assert "reason: ships a bad kernel" in (tmp_path / "out" / "hist" / second["id"] / "REVOKED").read_text()


def test_a_dry_run_changes_nothing(tmp_path, catalog_url):
    first, second = _two_builds_on_stable(tmp_path, catalog_url)
    before = (
        _builds(tmp_path, catalog_url),
        imgpipe(tmp_path, catalog_url, "channels", "hist", "--json").stdout,
    )

    done = imgpipe(tmp_path, catalog_url, "revoke", second["id"], "--reason", "bad", "--dry-run")

    assert done.returncode == 0, done.stderr
    assert f"would roll back: channel stable of hist: {second['id']} -> {first['id']}" in done.stdout
    assert f"would write note: {tmp_path / 'out' / 'hist' / second['id'] / 'REVOKED'}" in done.stdout
    assert done.stdout.splitlines()[-1] == "dry run: nothing was changed"
    after = (
        _builds(tmp_path, catalog_url),
        imgpipe(tmp_path, catalog_url, "channels", "hist", "--json").stdout,
    )
    assert after == before
    assert os.readlink(_link(tmp_path, "stable")) == f"hist/{second['id']}"
    assert not (tmp_path / "out" / "hist" / second["id"] / "REVOKED").exists()


def test_the_last_good_build_revoked_leaves_its_channel_and_fails(tmp_path, catalog_url):
    assert bake(tmp_path, catalog_url, spec(tmp_path)).returncode == 0
    (only,) = _builds(tmp_path, catalog_url)

    done = imgpipe(tmp_path, catalog_url, "revoke", only["id"], "--reason", "bad")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: channel latest of hist: no good build to roll back to" in done.stderr, done.stderr
    assert os.readlink(_link(tmp_path, "latest")) == f"hist/{only['id']}"  # left, not removed
    assert (tmp_path / "out" / "hist" / only["id"] / "REVOKED").is_file()  # the rest was done
    assert _builds(tmp_path, catalog_url)[0]["revoked"]["reason"] == "bad"


def test_bad_input_is_one_clear_line(tmp_path, catalog_url):
    assert bake(tmp_path, catalog_url, spec(tmp_path)).returncode == 0
    (build,) = _builds(tmp_path, catalog_url)

    unknown = imgpipe(tmp_path, catalog_url, "revoke", "20990101T000000Z-nope", "--reason", "bad")
    no_reason = imgpipe(tmp_path, catalog_url, "revoke", build["id"])
    blank = imgpipe(tmp_path, catalog_url, "revoke", build["id"], "--reason", "  ")

    for done in (unknown, no_reason, blank):
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert line.startswith("error: ")
    assert "no build '20990101T000000Z-nope' in the catalog" in unknown.stderr
    assert "--reason is required" in no_reason.stderr and "--reason is required" in blank.stderr
    assert _builds(tmp_path, catalog_url)[0]["revoked"] is None  # nothing happened
