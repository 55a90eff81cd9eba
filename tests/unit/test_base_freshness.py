"""Distro updates flow into nightly images. A cached bootstrap base records when it was made
and the Release date of each suite of its own apt sources; it is stale when too old or when
any of those suites (security fixes come in `-security`) has a newer Release. Checked
against a small apt archive served on loopback that the tests update themselves. A stale
base is rebuilt once as a new file, old ones stay while used and go after."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from imgpipe.errors import BuildError, Interrupted
from imgpipe.events import Emitter, NullSink
from imgpipe.fingerprint import explain, source_identity, target_fingerprint
from imgpipe.journal import Resources, remove_path
from imgpipe.sources import bootstrap, resolve_source
from imgpipe.sources.apt_release import recorded_releases, release_date, uri_to_filename, utc_iso
from imgpipe.sources.bootstrap import BootstrapRecipe, recipe_key, slim_filters, write_sidecar
from imgpipe.sources.freshness import ReleaseDates, StaleReason, base_staleness, refresh_stale_bases
from imgpipe.sources.generations import (
    backing_chain,
    first_path,
    generations,
    holding_base,
    recipe_stem,
    remove_unused_bases,
)
from imgpipe.sources.identity import bootstrap_recipe, cached_base_path
from imgpipe.spec import load_spec
from tests.conftest import write
from tests.loopback_http import serve_directory

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
SUITES = ("bookworm", "bookworm-updates", "bookworm-security")
STAMPED = re.compile(r"^debian-[a-z]+-[0-9a-f]{16}-\d{8}T\d{6}Z\.qcow2$")


def release_text(suite: str, date: datetime, *, signed: bool = True) -> str:
    """A Release file as Debian's archive writes it (the signature is not checked here)."""
    body = (
        f"Origin: Debian\nLabel: Debian\nSuite: {suite}\nCodename: {suite}\n"
        f"Date: {format_datetime(date.astimezone(UTC), usegmt=True).replace('GMT', 'UTC')}\n"
        "Acquire-By-Hash: yes\nArchitectures: amd64\nComponents: main\nDescription: test archive\n"
        "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/Contents-amd64\n"
    )
    if not signed:
        return body
    return (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        + body
        + "-----BEGIN PGP SIGNATURE-----\n\nnot a signature\n-----END PGP SIGNATURE-----\n"
    )


class Archive:
    """A tiny apt archive over HTTP on 127.0.0.1: /debian (the suite and -updates) and
    /debian-security, each suite with an InRelease the test can re-date."""

    def __init__(self, root: Path, url: str, hits: list[str]) -> None:
        self.root, self.url, self.hits = root, url, hits
        self.dates: dict[str, datetime] = {}

    def uri(self, suite: str) -> str:
        return f"{self.url}/debian-security" if suite.endswith("-security") else f"{self.url}/debian"

    def publish(self, suite: str, date: datetime, *, name: str = "InRelease") -> None:
        where = self.root / self.uri(suite).removeprefix(self.url + "/") / "dists" / suite
        where.mkdir(parents=True, exist_ok=True)
        for old in where.glob("*Release"):
            old.unlink()
        (where / name).write_text(release_text(suite, date, signed=name == "InRelease"))
        self.dates[suite] = date

    def recorded(self) -> list[dict[str, str | None]]:
        """apt_sources as a base built now from this archive records them."""
        return [{"uri": self.uri(s), "suite": s, "date": utc_iso(self.dates[s])} for s in SUITES]


@pytest.fixture
def archive(tmp_path, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)  # loopback is asked directly, never via a proxy
    root = tmp_path / "archive"
    root.mkdir()
    with serve_directory(root) as (url, hits):
        served = Archive(root, url, hits)
        for suite in SUITES:
            served.publish(suite, NOW - timedelta(days=2))
        yield served


@pytest.fixture
def cache(tmp_path, monkeypatch, isolated_state):
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def qcow2(path: Path, backing: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = ["-F", "qcow2", "-b", str(backing)] if backing else []
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), "1M"], check=True)
    return path


def make_base(path: Path, key: str, built: datetime, apt_sources, packages=None) -> Path:
    qcow2(path)
    write_sidecar(path, key, {"packages": packages or {"bash": "5.2:amd64"}}, apt_sources, now=built)
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- judging one base ---------------------------------------------------------------------


def test_a_base_as_new_as_its_archive_is_fresh_and_each_suite_is_asked_once(tmp_path, archive):
    base = make_base(tmp_path / "b.qcow2", "k", NOW - timedelta(hours=1), archive.recorded())
    releases = ReleaseDates()
    assert base_staleness(base, 7, NOW, fetch=releases) is None
    assert sorted(archive.hits) == sorted(
        f"/{archive.uri(s)[len(archive.url) + 1 :]}/dists/{s}/InRelease" for s in SUITES
    )
    assert base_staleness(base, 7, NOW, fetch=releases) is None
    assert len(archive.hits) == 3  # the second check (another spec on the base) asks no one


def test_a_newer_security_release_makes_the_base_stale_and_names_the_suite(tmp_path, archive):
    base = make_base(tmp_path / "b.qcow2", "k", NOW - timedelta(hours=1), archive.recorded())
    archive.publish("bookworm-security", NOW - timedelta(minutes=30))
    stale = base_staleness(base, 7, NOW, fetch=ReleaseDates())
    assert stale is not None and stale.reason is StaleReason.NEWER_RELEASE
    assert "suite bookworm-security" in str(stale) and archive.uri("bookworm-security") in str(stale)
    assert "2026-11-27 02:30 UTC" in str(stale) and "2026-11-25 03:00 UTC" in str(stale)


def test_a_mirror_behind_the_base_does_not_make_it_stale(tmp_path, archive):
    base = make_base(tmp_path / "b.qcow2", "k", NOW - timedelta(hours=1), archive.recorded())
    archive.publish("bookworm-updates", NOW - timedelta(days=5))  # a lagging mirror
    assert base_staleness(base, 7, NOW, fetch=ReleaseDates()) is None


def test_a_suite_with_only_a_release_file_is_read_from_it(tmp_path, archive):
    base = make_base(tmp_path / "b.qcow2", "k", NOW - timedelta(hours=1), archive.recorded())
    archive.publish("bookworm-updates", NOW - timedelta(minutes=5), name="Release")
    stale = base_staleness(base, 7, NOW, fetch=ReleaseDates())
    assert stale is not None and "suite bookworm-updates" in str(stale)
    assert any(h.endswith("bookworm-updates/InRelease") for h in archive.hits)
    assert any(h.endswith("bookworm-updates/Release") for h in archive.hits)


def test_a_base_older_than_max_age_is_stale(tmp_path, archive):
    base = make_base(tmp_path / "b.qcow2", "k", NOW - timedelta(days=8), archive.recorded())
    stale = base_staleness(base, 7, NOW, fetch=ReleaseDates())
    assert stale is not None and stale.reason is StaleReason.TOO_OLD
    assert str(stale) == "built 2026-11-19 03:00 UTC, more than the 7 days allowed"
    assert base_staleness(base, 9, NOW, fetch=ReleaseDates()) is None


def test_an_unreachable_mirror_warns_and_keeps_the_base_but_max_age_still_applies(tmp_path):
    dead = f"http://127.0.0.1:{closed_port()}/debian"
    sources = [{"uri": dead, "suite": s, "date": utc_iso(NOW - timedelta(days=2))} for s in SUITES]
    base = make_base(tmp_path / "b.qcow2", "k", NOW - timedelta(days=1), sources)
    warnings: list[str] = []
    assert base_staleness(base, 7, NOW, fetch=ReleaseDates(), warn=warnings.append) is None
    assert len(warnings) == 3 and all("unknown" in w and "kept" in w for w in warnings)
    assert "bookworm-security" in " ".join(warnings)
    old = make_base(tmp_path / "old.qcow2", "k", NOW - timedelta(days=10), sources)
    stale = base_staleness(old, 7, NOW, fetch=ReleaseDates(), warn=warnings.append)
    assert stale is not None and stale.reason is StaleReason.TOO_OLD


def test_a_base_of_an_older_imgpipe_is_judged_by_age_alone(tmp_path, archive):
    base = qcow2(tmp_path / "legacy.qcow2")
    write(
        base.with_suffix(".json"), json.dumps({"recipe": "k", "built": "2026-11-25", "built_from": {"p": 1}})
    )
    assert base_staleness(base, 7, NOW, fetch=ReleaseDates()) is None
    assert base_staleness(base, 1, NOW, fetch=ReleaseDates()).reason is StaleReason.TOO_OLD
    bare = qcow2(tmp_path / "bare.qcow2")  # no sidecar at all: its mtime says when
    assert base_staleness(bare, 1, datetime.now(UTC) + timedelta(days=2)) is not None
    assert archive.hits == []


# --- what a bootstrap records ---------------------------------------------------------------


def test_apt_names_list_files_as_uri_to_filename_does():
    assert (
        uri_to_filename("http://127.0.0.1:8080/debian/dists/bookworm/InRelease")
        == "127.0.0.1:8080_debian_dists_bookworm_InRelease"
    )
    assert (
        uri_to_filename("https://user:pw@127.0.0.1/a_b/~x/dists/s/Release")
        == "127.0.0.1_a%5fb_%7ex_dists_s_Release"
    )
    assert uri_to_filename("file:/srv/repo/dists/bookworm/InRelease") == "_srv_repo_dists_bookworm_InRelease"


def tree_with_sources(tree: Path) -> None:
    write(
        tree / "etc/apt/sources.list",
        "# written by mmdebstrap\n"
        "deb http://127.0.0.1:8080/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] "
        "http://127.0.0.1:8080/debian/ bookworm-updates main\n"
        "deb-src http://127.0.0.1:8080/debian bookworm main  # the same suite: once\n",
    )
    write(
        tree / "etc/apt/sources.list.d/security.sources",
        "Types: deb deb-src\nURIs: http://127.0.0.1:8080/debian-security\nSuites: bookworm-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n"
        "# switched off: not a source\n"
        "Types: deb\nURIs: http://127.0.0.1:8080/off\nSuites: x\nEnabled: no\n\n"
        "Types: deb\nURIs: http://127.0.0.1:8080/team\nSuites:\n stable\n",
    )
    write(tree / "etc/apt/sources.list.d/ignored.list.disabled", "deb http://127.0.0.1:8080/nope x main\n")
    lists = tree / "var/lib/apt/lists"
    write(lists / "127.0.0.1:8080_debian_dists_bookworm_InRelease", release_text("bookworm", NOW))
    write(
        lists / "127.0.0.1:8080_debian_dists_bookworm-updates_Release",
        release_text("bookworm-updates", NOW - timedelta(hours=6), signed=False),
    )
    write(
        lists / "127.0.0.1:8080_debian-security_dists_bookworm-security_InRelease",
        release_text("bookworm-security", NOW - timedelta(hours=1)),
    )


def test_the_tree_s_own_sources_and_list_dates_are_recorded(tmp_path):
    tree_with_sources(tmp_path)
    assert recorded_releases(tmp_path) == [
        {"uri": "http://127.0.0.1:8080/debian", "suite": "bookworm", "date": "2026-11-27T03:00:00Z"},
        {"uri": "http://127.0.0.1:8080/debian", "suite": "bookworm-updates", "date": "2026-11-26T21:00:00Z"},
        {
            "uri": "http://127.0.0.1:8080/debian-security",
            "suite": "bookworm-security",
            "date": "2026-11-27T02:00:00Z",
        },
        {"uri": "http://127.0.0.1:8080/team", "suite": "stable", "date": None},  # no lists for it
    ]


def test_the_date_is_read_from_the_signed_paragraph_only():
    assert release_date(release_text("s", NOW).splitlines()) == NOW
    assert release_date(["-----BEGIN PGP SIGNED MESSAGE-----", "Hash: SHA256", "", "Origin: x", ""]) is None
    assert release_date(["Origin: x", "Date: Fri, 27 Nov 2026 04:00:00 +0100"]) == NOW


def test_a_bootstrap_writes_the_sidecar_with_its_time_and_apt_sources(tmp_path, monkeypatch):
    """build_base_image with the external tools stood in for: the sidecar it writes."""
    filters = slim_filters(())

    def fake_run(argv, **kwargs):
        if argv[0] == "mmdebstrap":
            tree = Path(argv[-1])
            tree_with_sources(tree)
            write(tree / "etc/shadow", "root:x:20000:0:99999:7:::\n")
            write(tree / "etc/dpkg/dpkg.cfg.d/99mmdebstrap", "\n".join(filters) + "\n")
            write(tree / "boot/vmlinuz-6.1", "")
            write(tree / "boot/initrd.img-6.1", "")
            write(tree / "var/lib/dpkg/status", "Package: bash\nStatus: install ok installed\nVersion: 5.2\n")
            for made_by_the_suites_grub in ("boot.img", "core.img"):
                write(Path(argv[-1]).parent / made_by_the_suites_grub, "")
        elif argv[:2] == ["qemu-img", "convert"]:
            qcow2(Path(argv[-1]))
        return ""

    monkeypatch.setattr(bootstrap, "run_command", fake_run)
    monkeypatch.setattr(bootstrap, "_make_disk", lambda raw, *a: raw.write_bytes(b""))
    dest = tmp_path / "bases" / "b.qcow2"
    before = datetime.now(UTC).replace(microsecond=0)
    bootstrap.build_base_image(BootstrapRecipe(), dest, tmp_path / "work", lambda _t: None)
    sidecar = json.loads(dest.with_suffix(".json").read_text())
    assert sidecar["recipe"] == recipe_key(BootstrapRecipe())
    assert before <= datetime.fromisoformat(sidecar["built_at"]) <= datetime.now(UTC)
    assert sidecar["built"] == sidecar["built_at"][:10]
    assert [(e["suite"], e["date"]) for e in sidecar["apt_sources"]] == [
        ("bookworm", "2026-11-27T03:00:00Z"),
        ("bookworm-updates", "2026-11-26T21:00:00Z"),
        ("bookworm-security", "2026-11-27T02:00:00Z"),
        ("stable", None),
    ]
    assert not (tmp_path / "work" / "tree").exists()


# --- refreshing the bases of many specs -------------------------------------------------------

SPEC = "imgpipe: 1\nname: {name}\n{extra}targets:\n  local: {{builder: libvirt}}\n"


def spec(here: Path, name: str, extra: str = ""):
    return load_spec(write(here / f"{name}.yml", SPEC.format(name=name, extra=extra)))


class FakeBootstrap:
    """build_base_image without mmdebstrap: a real qcow2 and a sidecar with the archive's
    Release dates of the moment, as a real bootstrap from that archive would record."""

    def __init__(self, archive: Archive) -> None:
        self.archive, self.built = archive, []

    def __call__(self, recipe, dest, workdir, log, cancel=None):
        self.built.append(dest)
        workdir.mkdir(parents=True)
        qcow2(dest.with_name(f".{dest.name}.partial"))
        write_sidecar(dest, recipe_key(recipe), {"packages": {"bash": "5.2:amd64"}}, self.archive.recorded())
        dest.with_name(f".{dest.name}.partial").rename(dest)


@pytest.fixture
def specs(tmp_path, cache, archive):
    """Two specs on one recipe, a third on a URL image (no base), and the recipe's base,
    built a day ago from the archive as it was then."""
    here = tmp_path / "specs"
    loaded = [
        spec(here, "web", "rebuild: {base_max_age_days: 30}\n"),
        spec(here, "db"),
        spec(
            here,
            "appliance",
            f"source:\n  image: {{url: 'http://127.0.0.1:1/x.qcow2', checksum: 'sha256:{'0' * 64}'}}\n",
        ),
    ]
    recipe = bootstrap_recipe(loaded[0])
    key = recipe_key(recipe)
    old = make_base(first_path(recipe, key), key, datetime.now(UTC) - timedelta(days=1), archive.recorded())
    return loaded, old


def test_a_stale_base_is_rebuilt_once_as_a_new_file_for_every_spec_on_it(specs, archive, monkeypatch):
    loaded, old = specs
    fake = FakeBootstrap(archive)
    monkeypatch.setattr("imgpipe.sources.bootstrap.build_base_image", fake)
    overlay = qcow2(old.parent.parent / "vm" / "disk.qcow2", backing=old)  # a VM's disk on the old base
    before = target_fingerprint(loaded[0], "local", hmac_key=b"k", source=source_identity(loaded[0], "local"))
    archive.publish("bookworm-security", datetime.now(UTC) - timedelta(minutes=1))
    log: list[str] = []
    with holding_base(old):  # a build or VM still uses the old base
        (refresh,) = refresh_stale_bases(loaded, log.append, threading.Event(), fetch=ReleaseDates())
        assert len(fake.built) == 1 and STAMPED.match(fake.built[0].name)
        assert refresh.state == "rebuilt" and refresh.specs == ["db", "web"] and refresh.max_age_days == 7
        assert refresh.base == old.name and refresh.new_base == fake.built[0].name
        assert "suite bookworm-security" in refresh.stale and refresh.removed == []
        assert old.is_file() and old.with_suffix(".json").is_file()
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "--backing-chain", str(overlay)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert info[-1]["filename"] == str(old)  # the old base's users keep working
    recipe = bootstrap_recipe(loaded[0])
    assert cached_base_path(recipe, recipe_key(recipe)) == fake.built[0]
    after = target_fingerprint(loaded[0], "local", hmac_key=b"k", source=source_identity(loaded[0], "local"))
    assert after.digest != before.digest
    today = datetime.now(UTC).date().isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert explain(before.parts, after.parts) == [f"source base rebuilt {today} (was {yesterday})"]
    assert "rebuilt as" in refresh.to_json()["summary"] and json.dumps(refresh.to_json())

    removed = remove_unused_bases(log.append)  # nothing holds the old base now
    assert [(a.path, a.remove) for a in removed] == [(old, True)]
    assert not old.exists() and not old.with_suffix(".json").exists() and fake.built[0].is_file()
    assert old.with_suffix(".lock").exists()  # the recipe's lock, shared by every generation
    again = refresh_stale_bases(loaded, log.append, threading.Event(), fetch=ReleaseDates())
    assert [r.state for r in again] == ["fresh"] and len(fake.built) == 1
    summary = again[0].to_json()["summary"]
    assert summary.startswith(f"{fake.built[0].name}: fresh (built ") and summary.endswith("(specs: db, web)")


def test_the_smallest_max_age_among_the_specs_sharing_a_base_applies(specs, archive, monkeypatch):
    loaded, old = specs
    fake = FakeBootstrap(archive)
    monkeypatch.setattr("imgpipe.sources.bootstrap.build_base_image", fake)
    now = datetime.now(UTC) + timedelta(days=8)  # web allows 30 days, db the default 7
    (refresh,) = refresh_stale_bases(
        loaded[:1], lambda _t: None, threading.Event(), now, fetch=ReleaseDates()
    )
    assert refresh.state == "fresh" and fake.built == []
    (refresh,) = refresh_stale_bases(loaded, lambda _t: None, threading.Event(), now, fetch=ReleaseDates())
    assert refresh.state == "rebuilt" and "7 days" in refresh.stale and len(fake.built) == 1
    assert refresh.removed == [old.name]  # no one held it


def test_two_runners_rebuild_a_stale_base_once(specs, archive, monkeypatch):
    loaded, _old = specs
    fake = FakeBootstrap(archive)
    monkeypatch.setattr("imgpipe.sources.bootstrap.build_base_image", fake)
    archive.publish("bookworm-security", datetime.now(UTC) - timedelta(minutes=1))
    both_judged = threading.Barrier(2, timeout=20)

    def fetch(source):
        from imgpipe.sources.freshness import fetch_release_date

        if source.suite == "bookworm-security":
            both_judged.wait()  # both runners see the base stale before either rebuilds
        return fetch_release_date(source)

    results: list = []
    runners = [
        threading.Thread(
            target=lambda: results.extend(
                refresh_stale_bases(loaded, lambda _t: None, threading.Event(), fetch=ReleaseDates(fetch))
            )
        )
        for _ in range(2)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(30)
    assert len(fake.built) == 1
    assert sorted(r.state for r in results) == ["rebuilt", "rebuilt elsewhere"]


def test_a_failed_rebuild_is_reported_and_the_old_base_stays_current(specs, archive, monkeypatch):
    loaded, old = specs

    def broken(*args, **kwargs):
        raise BuildError("mmdebstrap failed with exit code 1")

    monkeypatch.setattr("imgpipe.sources.bootstrap.build_base_image", broken)
    archive.publish("bookworm", datetime.now(UTC))
    (refresh,) = refresh_stale_bases(loaded, lambda _t: None, threading.Event(), fetch=ReleaseDates())
    assert (
        refresh.state == "failed" and "exit code 1" in refresh.error and "rebuild failed" in refresh.summary
    )
    recipe = bootstrap_recipe(loaded[0])
    assert cached_base_path(recipe, recipe_key(recipe)) == old


def test_cancel_stops_the_refresh_before_any_rebuild(specs, archive, monkeypatch):
    loaded, _old = specs
    fake = FakeBootstrap(archive)
    monkeypatch.setattr("imgpipe.sources.bootstrap.build_base_image", fake)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Interrupted):
        refresh_stale_bases(loaded, lambda _t: None, cancel, fetch=ReleaseDates())
    assert fake.built == [] and archive.hits == []


def test_no_cached_base_means_nothing_to_refresh(tmp_path, cache, archive, monkeypatch):
    fake = FakeBootstrap(archive)
    monkeypatch.setattr("imgpipe.sources.bootstrap.build_base_image", fake)
    (refresh,) = refresh_stale_bases([spec(tmp_path, "x")], lambda _t: None, threading.Event())
    assert refresh.state == "absent" and refresh.base is None and fake.built == []


# --- old generations: removed once nothing uses them -------------------------------------------


def newer_generation(old: Path, key: str, archive: Archive) -> Path:
    stem = old.name.removesuffix(".qcow2")
    return make_base(
        old.with_name(f"{stem}-20991231T000000Z.qcow2"), key, datetime.now(UTC), archive.recorded()
    )


def test_a_build_holds_its_base_until_its_resources_unwind(specs, archive, isolated_state, monkeypatch):
    loaded, old = specs
    recipe = bootstrap_recipe(loaded[1])
    resources = Resources(isolated_state / "journal", "b1", "local")
    resolved = resolve_source(loaded[1], Emitter(NullSink(), "local"), resources=resources)
    assert resolved.path == old and resolved.record["base"] == old.name
    journal = json.loads(resources.path.read_text())
    assert [r["kind"] for r in journal["resources"]] == ["base-hold"]
    new = newer_generation(old, recipe_key(recipe), archive)
    assert generations(recipe_stem(recipe, recipe_key(recipe)))[-1] == new

    kept = remove_unused_bases(lambda _t: None)
    assert [(a.path, a.remove) for a in kept] == [(old, False)] and "build b1" in kept[0].reason
    assert old.is_file()
    assert resources.close() == [] and not resources.path.exists()
    gone = remove_unused_bases(lambda _t: None)
    assert [(a.path, a.remove) for a in gone] == [(old, True)] and not old.exists()


def test_a_kept_build_s_disk_keeps_its_base_and_a_dry_run_changes_nothing(specs, archive, isolated_state):
    loaded, old = specs
    recipe = bootstrap_recipe(loaded[1])
    newer_generation(old, recipe_key(recipe), archive)
    resources = Resources(isolated_state / "journal", "b2", "local")  # --on-error abort kept it
    workdir = old.parent.parent / "work" / "b2-local"
    resources.track("workdir", remove_path, path=str(workdir))
    qcow2(workdir / "disk.qcow2", backing=old)
    assert backing_chain(workdir / "disk.qcow2") == [old]
    resources.keep()
    listing = sorted(p.name for p in old.parent.iterdir())
    kept = remove_unused_bases(lambda _t: None)
    assert [(a.path, a.remove) for a in kept] == [(old, False)] and "imgpipe gc" in kept[0].reason
    resources.path.unlink()  # `imgpipe gc --build b2` removed that build
    dry = remove_unused_bases(lambda _t: None, dry_run=True)
    assert [(a.path, a.remove) for a in dry] == [(old, True)]
    assert sorted(p.name for p in old.parent.iterdir()) == listing
