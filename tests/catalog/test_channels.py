"""Channels through the CLI, on SQLite and PostgreSQL: `latest` follows each succeeded
build by itself, `promote` points a channel at a build (a symlink under the output
directory for image files), `channels` lists them with their history, a failed build is
refused, and a move a kill -9 interrupted is reverted or completed by the next command."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from tests.catalog.test_bake_history import bake, imgpipe, spec


def _builds(tmp: Path, url: str) -> list[dict]:
    return json.loads(imgpipe(tmp, url, "builds", "--json").stdout)["builds"]


def _channels(tmp: Path, url: str) -> dict:
    done = imgpipe(tmp, url, "channels", "hist", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _link(tmp: Path, channel: str) -> Path:
    return tmp / "out" / f"hist@{channel}"


def test_latest_follows_builds_and_promote_moves_a_channel(tmp_path, catalog_url):
    path = spec(tmp_path)
    assert bake(tmp_path, catalog_url, path).returncode == 0
    (first,) = _builds(tmp_path, catalog_url)
    latest = _link(tmp_path, "latest")
    assert os.readlink(latest) == f"hist/{first['id']}"
    assert (latest / "hist-local.qcow2").is_file()  # the stable path a consumer reads

    spec(tmp_path, token="another")  # a second, different build
    assert bake(tmp_path, catalog_url, path).returncode == 0
    second = _builds(tmp_path, catalog_url)[0]
    assert second["id"] != first["id"]
    assert os.readlink(latest) == f"hist/{second['id']}"

    promoted = imgpipe(tmp_path, catalog_url, "promote", "hist", first["id"][:18], "--channel", "stable")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.splitlines()[0] == f"stable: - -> {first['id']}"
    stable = _link(tmp_path, "stable")
    assert os.readlink(stable) == f"hist/{first['id']}" and (stable / "hist-local.qcow2").is_file()
    again = imgpipe(tmp_path, catalog_url, "promote", "hist", second["id"], "--channel", "stable", "--json")
    assert json.loads(again.stdout)["previous"] == first["id"]
    assert os.readlink(stable) == f"hist/{second['id']}"

    listed = _channels(tmp_path, catalog_url)
    assert {c["channel"]: c["build_id"] for c in listed["channels"]} == {
        "latest": second["id"],
        "stable": second["id"],
    }
    history = [(m["channel"], m["from"], m["to"], m["outcome"]) for m in listed["history"]]
    assert history == [
        ("stable", first["id"], second["id"], "moved"),
        ("stable", None, first["id"], "moved"),
        ("latest", first["id"], second["id"], "moved"),
        ("latest", None, first["id"], "moved"),
    ]
    assert all("@" in m["by"] for m in listed["history"])
    text = imgpipe(tmp_path, catalog_url, "channels", "hist").stdout
    assert f"stable: {second['id']}" in text and f"{stable} -> hist/{second['id']}" in text


def test_a_failed_or_unknown_build_is_not_promoted(tmp_path, catalog_url):
    assert bake(tmp_path, catalog_url, spec(tmp_path)).returncode == 0
    good = _builds(tmp_path, catalog_url)[0]
    failed_bake = bake(tmp_path, catalog_url, spec(tmp_path, extra=", fail: true"))
    assert failed_bake.returncode == 1
    failed = _builds(tmp_path, catalog_url)[0]
    assert failed["status"] == "failed"
    assert os.readlink(_link(tmp_path, "latest")) == f"hist/{good['id']}"  # a failure never moves latest

    refused = imgpipe(tmp_path, catalog_url, "promote", "hist", failed["id"], "--channel", "stable")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "failed: only a succeeded build can be promoted" in refused.stderr, refused.stderr
    unknown = imgpipe(tmp_path, catalog_url, "promote", "hist", "20990101T000000Z-x", "--channel", "stable")
    assert unknown.returncode == 2 and "no build" in unknown.stderr and "Traceback" not in unknown.stderr
    bad_name = imgpipe(tmp_path, catalog_url, "promote", "hist", good["id"], "--channel", "Stable!")
    assert bad_name.returncode == 2 and "not a channel name" in bad_name.stderr
    (good_dir,) = [p for p in (tmp_path / "out" / "hist").iterdir() if p.name == good["id"]]
    (good_dir / "hist-local.qcow2").unlink()  # pruned by hand
    pruned = imgpipe(tmp_path, catalog_url, "promote", "hist", good["id"], "--channel", "stable")
    assert pruned.returncode == 2 and "is gone" in pruned.stderr, pruned.stderr
    assert not _link(tmp_path, "stable").exists()
    assert [c["channel"] for c in _channels(tmp_path, catalog_url)["channels"]] == ["latest"]


def _interrupted_move(url: str, tmp: Path, to_build: str, state: str) -> None:
    """What a `promote` killed with -9 leaves: its journal in the catalog (owned by a
    process that is gone) and the symlink already pointing at the new build."""
    from imgpipe.catalog import open_catalog
    from imgpipe.catalog.owner import Owner
    from imgpipe.channels import Mover, places_for

    with open_catalog(url) as catalog:
        build = catalog.get(to_build)
        assert build is not None
        mover = Mover(catalog)
        places = [mover._with_before(p) for p in places_for(build, "stable")]
        dead = asdict(Owner.current()) | {"pid_start": "1"}  # this pid, started at another time: gone
        journal = {"token": "t-killed", "owner": dead, "from": None, "to": to_build, "by": "ci@host"}
        current = catalog.channel("hist", "stable")
        journal["from"] = current.build_id if current else None
        catalog.begin_channel_move("hist", "stable", {**journal, "state": "moving", "places": places})
        for place in places:
            mover._apply(place, place["after"])
        if state == "applied":
            catalog.mark_channel_move("hist", "stable", "t-killed", "applied")


def test_a_killed_move_is_reverted_or_completed_by_the_next_command(tmp_path, catalog_url):
    path = spec(tmp_path)
    assert bake(tmp_path, catalog_url, path).returncode == 0
    spec(tmp_path, token="another")
    assert bake(tmp_path, catalog_url, path).returncode == 0
    second, first = _builds(tmp_path, catalog_url)
    assert (
        imgpipe(tmp_path, catalog_url, "promote", "hist", first["id"], "--channel", "stable").returncode == 0
    )
    stable = _link(tmp_path, "stable")

    # killed half way: the symlink moved, the catalog did not: the next command puts it back
    _interrupted_move(catalog_url, tmp_path, second["id"], "moving")
    assert os.readlink(stable) == f"hist/{second['id']}"
    listed = _channels(tmp_path, catalog_url)
    assert os.readlink(stable) == f"hist/{first['id']}"
    assert listed["recovered"] == [
        f"stable: reverted the interrupted move to {second['id']} (back at {first['id']})"
    ]
    assert {c["channel"]: c["build_id"] for c in listed["channels"]}["stable"] == first["id"]
    assert listed["history"][0]["outcome"] == "reverted"

    # killed after every place moved, before the catalog said so: promote completes it first
    _interrupted_move(catalog_url, tmp_path, second["id"], "applied")
    done = imgpipe(tmp_path, catalog_url, "promote", "hist", second["id"], "--channel", "stable")
    assert done.returncode == 0, done.stderr
    assert "completed the move" in done.stderr and done.stdout.strip() == f"stable: already at {second['id']}"
    assert os.readlink(stable) == f"hist/{second['id']}"
    outcomes = [(m["to"], m["outcome"]) for m in _channels(tmp_path, catalog_url)["history"]]
    assert outcomes[:3] == [(second["id"], "completed"), (second["id"], "reverted"), (first["id"], "moved")]


def test_a_move_in_progress_elsewhere_is_not_disturbed(tmp_path, catalog_url):
    """A journaled move whose owner is alive (or on another host) is left alone: a second
    promote is refused, saying who moves it."""
    from imgpipe.catalog import open_catalog
    from imgpipe.catalog.owner import Owner

    assert bake(tmp_path, catalog_url, spec(tmp_path)).returncode == 0
    (build,) = _builds(tmp_path, catalog_url)
    other = asdict(Owner.current()) | {"host": "runner-b", "pid": 4242}
    with open_catalog(catalog_url) as catalog:
        journal = {"token": "t", "owner": other, "from": None, "to": build["id"], "by": "ci@runner-b"}
        catalog.begin_channel_move("hist", "stable", {**journal, "state": "moving", "places": []})
    refused = imgpipe(tmp_path, catalog_url, "promote", "hist", build["id"], "--channel", "stable")
    assert refused.returncode == 2 and "being moved" in refused.stderr and "runner-b" in refused.stderr
    assert _channels(tmp_path, catalog_url)["recovered"] == []


def test_a_catalog_of_the_nightly_schema_gains_channels(catalog_url):
    """A catalog last written by the imgpipe before channels (revision 0002) is migrated
    with its builds, and channels work on it."""
    from alembic import command

    from imgpipe.catalog import open_catalog
    from imgpipe.catalog.schema import HEAD, _config
    from imgpipe.catalog.store import _create_engine
    from tests.catalog.conftest import execute

    engine = _create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            config = _config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
    finally:
        engine.dispose()
    execute(
        catalog_url, "INSERT INTO spec (name, origin, claimed_at) VALUES ('old', 'h:/old.yml', '2026-01-01')"
    )
    with open_catalog(catalog_url) as catalog:
        assert catalog.channels("old") == [] and catalog.channel_history("old") == []
        journal = {"token": "t", "owner": {}, "from": None, "to": "b1", "by": "me@here", "places": []}
        catalog.begin_channel_move("old", "stable", journal)
        moved = catalog.end_channel_move("old", "stable", "t", "moved")
        assert moved is not None and moved.build_id == "b1" and moved.places == ()
    assert execute(catalog_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_a_latest_that_cant_move_warns_and_keeps_the_build(tmp_path, catalog_url):
    blocker = _link(tmp_path, "latest")
    (blocker / "something").mkdir(parents=True)  # a directory where the symlink goes
    done = bake(tmp_path, catalog_url, spec(tmp_path))
    assert done.returncode == 0, done.stderr
    (build,) = _builds(tmp_path, catalog_url)
    assert build["status"] == "succeeded"
    assert f"warning: build {build['id']} succeeded, but channel latest could not be moved" in done.stderr
    assert f"imgpipe promote hist {build['id']} --channel latest" in done.stderr
    listed = _channels(tmp_path, catalog_url)
    assert listed["channels"] == [] and [m["outcome"] for m in listed["history"]] == ["rolled back"]
