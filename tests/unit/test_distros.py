"""The distro/suite table (imgpipe.sources.distros) and everything that reads it: the spec's
`source.bootstrap.suite` (validation, default, schema), the bootstrap recipe and its
mmdebstrap command, the image's apt sources format, and the Release-date bookkeeping of a
tree whose sources are deb822 (trixie's format)."""

import json
from pathlib import Path

import pytest

from imgpipe.errors import BuildError, SpecError
from imgpipe.sources import bootstrap
from imgpipe.sources.apt_release import recorded_releases, to_deb822, tree_sources
from imgpipe.sources.bootstrap import BootstrapRecipe, recipe_key
from imgpipe.sources.distros import DISTROS, UnknownSuite, default_suite, get_suite, suite_names
from imgpipe.spec import load_spec
from imgpipe.spec.schema import spec_json_schema
from tests.conftest import write

SPEC = "imgpipe: 1\nname: web\n{source}targets:\n  local: {{builder: libvirt}}\n"
MIRROR = "http://127.0.0.1:8080/debian"  # loopback stand-ins: the real mirror is mmdebstrap's choice
SECURITY = "http://127.0.0.1:8080/debian-security"


# --- the table ---------------------------------------------------------------------------------


def test_each_distro_has_exactly_one_current_stable_suite_and_trixie_is_debian_s():
    for distro, suites in DISTROS.items():
        assert [s.name for s in suites.values() if s.stable] == [default_suite(distro)]
        assert all(name == suite.name for name, suite in suites.items())
    assert default_suite("debian") == "trixie"
    assert suite_names("debian") == ("bookworm", "trixie")


def test_a_suite_lists_its_own_suites_and_base_packages():
    trixie, bookworm = get_suite("debian", "trixie"), get_suite("debian", "bookworm")
    assert trixie.suites() == ("trixie", "trixie-updates", "trixie-security")
    assert bookworm.suites() == ("bookworm", "bookworm-updates", "bookworm-security")
    assert (trixie.version, bookworm.version) == ("13", "12")
    for suite in (trixie, bookworm):
        packages = suite.base_packages()
        assert list(packages) == sorted(set(packages))
        assert {suite.kernel, *suite.grub, *suite.cloud_init, "openssh-server", "systemd-resolved"} <= set(
            packages
        )
    assert (trixie.apt_sources, bookworm.apt_sources) == ("deb822", "one-line")


def test_an_unknown_suite_or_distro_names_the_known_ones():
    with pytest.raises(UnknownSuite, match=r"unknown debian suite 'sid' \(known: bookworm, trixie\)"):
        get_suite("debian", "sid")
    with pytest.raises(UnknownSuite, match=r"unknown distro 'ubuntu' \(known: debian\)"):
        suite_names("ubuntu")


# --- the spec ----------------------------------------------------------------------------------


def test_the_default_suite_is_the_current_stable_one(tmp_path):
    from imgpipe.sources.identity import bootstrap_recipe

    no_suite = load_spec(write(tmp_path / "a.yml", SPEC.format(source="source:\n  bootstrap: {}\n")))
    assert no_suite.spec.source.bootstrap.suite == "trixie"
    no_source = load_spec(write(tmp_path / "b.yml", SPEC.format(source="")))
    assert bootstrap_recipe(no_source).suite == "trixie" == BootstrapRecipe().suite
    for suite in suite_names("debian"):
        named = SPEC.format(source=f"source:\n  bootstrap: {{distro: debian, suite: {suite}}}\n")
        assert bootstrap_recipe(load_spec(write(tmp_path / f"{suite}.yml", named))).suite == suite


def test_an_unknown_suite_is_a_located_spec_error_listing_the_known_ones(tmp_path):
    source = "source:\n  bootstrap:\n    distro: debian\n    suite: sid\n"
    spec = write(tmp_path / "web.yml", SPEC.format(source=source))
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    text = str(caught.value)
    assert f"{spec}:6:12:" in text and "source.bootstrap.suite" in text
    assert "unknown debian suite 'sid' (known: bookworm, trixie)" in text


def test_the_schema_offers_the_table_s_suites_and_default():
    suite = spec_json_schema()["$defs"]["Bootstrap"]["properties"]["suite"]
    assert suite["enum"] == ["bookworm", "trixie"] and suite["default"] == "trixie"
    assert "bookworm, trixie" in suite["description"]


def test_init_writes_a_spec_on_the_current_stable_suite(tmp_path):
    from imgpipe.scaffold import scaffold

    scaffold(tmp_path, "demo")
    loaded = load_spec(tmp_path / "image.yml")
    assert loaded.spec.source.bootstrap.suite == "trixie"
    assert "bookworm, trixie" in (tmp_path / "image.yml").read_text()


# --- the recipe and the bootstrap --------------------------------------------------------------


def test_each_suite_is_a_recipe_and_a_cached_base_of_its_own():
    keys = {recipe_key(BootstrapRecipe(suite=s)) for s in suite_names("debian")}
    assert len(keys) == len(suite_names("debian"))
    assert recipe_key(BootstrapRecipe()) == recipe_key(BootstrapRecipe(suite="trixie"))


@pytest.mark.parametrize("suite", suite_names("debian"))
def test_mmdebstrap_installs_the_suite_s_own_kernel_grub_and_cloud_init(tmp_path, monkeypatch, suite):
    calls, embedded = [], []

    def record(argv, **kwargs):
        calls.append(argv)
        embedded.append((tmp_path / "grub-embed.cfg").read_text())
        raise RuntimeError("stop after mmdebstrap")

    monkeypatch.setattr(bootstrap, "run_command", record)
    with pytest.raises(RuntimeError, match="stop after"):
        bootstrap.build_base_image(BootstrapRecipe(suite=suite), tmp_path / "b.qcow2", tmp_path, print)
    (argv,), (embed,) = calls, embedded
    assert argv[-2:] == [suite, str(tmp_path / "tree")]
    (include,) = [a.removeprefix("--include=").split(",") for a in argv if a.startswith("--include=")]
    assert include == list(get_suite("debian", suite).base_packages())
    hooks = " ".join(a for a in argv if a.startswith("--customize-hook="))
    assert 'chroot "$1" grub-mkimage -O i386-pc -d /usr/lib/grub/i386-pc' in hooks
    assert "apt-get purge --yes --autoremove grub-pc-bin" in hooks
    assert embed.startswith("search --no-floppy --fs-uuid --set=root ") and "($root)/boot/grub" in embed


def test_an_unknown_suite_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(bootstrap, "run_command", lambda *a, **k: pytest.fail("ran a command"))
    with pytest.raises(BuildError, match=r"known: bookworm, trixie"):
        bootstrap.build_base_image(BootstrapRecipe(suite="sid"), tmp_path / "b.qcow2", tmp_path, print)


def _mmdebstrap_sources(tree: Path, suite: str) -> None:
    write(
        tree / "etc/apt/sources.list",
        f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\n"
        f"deb {SECURITY} {suite}-security main\n",
    )


def test_trixie_s_image_gets_deb822_sources_and_bookworm_s_keeps_sources_list(tmp_path):
    write(tmp_path / "trixie/usr/share/keyrings/debian-archive-keyring.gpg", "")
    for suite in ("trixie", "bookworm"):
        _mmdebstrap_sources(tmp_path / suite, suite)
        if get_suite("debian", suite).apt_sources == "deb822":
            bootstrap._deb822_sources(tmp_path / suite / "etc/apt")
    apt = tmp_path / "trixie/etc/apt"
    assert not (apt / "sources.list").exists()
    assert (apt / "sources.list.d/debian.sources").read_text() == (
        f"Types: deb\nURIs: {MIRROR}\nSuites: trixie trixie-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {SECURITY}\nSuites: trixie-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    assert (tmp_path / "bookworm/etc/apt/sources.list").is_file()
    for suite in ("trixie", "bookworm"):  # the same sources either way
        assert [(s.uri, s.suite) for s in tree_sources(tmp_path / suite)] == [
            (MIRROR, suite),
            (MIRROR, f"{suite}-updates"),
            (SECURITY, f"{suite}-security"),
        ]


def test_one_line_sources_in_deb822_keep_options_and_refuse_what_deb822_cannot_say():
    text = (
        "# a comment\n"
        f"deb [arch=amd64,i386 signed-by=/k.gpg] {MIRROR}/ trixie main contrib\n"
        f"deb-src {MIRROR} trixie main\n"
        "deb file:/srv/repo ./\n"
    )
    assert to_deb822(text) == (
        f"Types: deb\nURIs: {MIRROR}/\nSuites: trixie\nComponents: main contrib\n"
        "Architectures: amd64 i386\nSigned-By: /k.gpg\n\n"
        f"Types: deb-src\nURIs: {MIRROR}\nSuites: trixie\nComponents: main\n\n"
        "Types: deb\nURIs: file:/srv/repo\nSuites: ./\n"
    )
    assert to_deb822(f"deb [arch-=i386] {MIRROR} trixie main\n") is None
    assert to_deb822(f"deb [frobnicate=yes] {MIRROR} trixie main\n") is None
    assert to_deb822("# nothing\n") is None


def test_release_dates_of_a_trixie_tree_with_deb822_sources(tmp_path):
    """recorded_releases reads trixie's debian.sources; the lists' names do not change."""
    tree = tmp_path / "tree"
    _mmdebstrap_sources(tree, "trixie")
    bootstrap._deb822_sources(tree / "etc/apt")
    lists = tree / "var/lib/apt/lists"
    dates = {"trixie": "Sat, 08 Nov 2026 09:03:11 UTC", "trixie-security": "Fri, 27 Nov 2026 02:00:00 UTC"}
    write(
        lists / "127.0.0.1:8080_debian_dists_trixie_InRelease", f"Origin: Debian\nDate: {dates['trixie']}\n"
    )
    write(
        lists / "127.0.0.1:8080_debian-security_dists_trixie-security_InRelease",
        f"Origin: Debian\nDate: {dates['trixie-security']}\n",
    )
    assert recorded_releases(tree) == [
        {"uri": MIRROR, "suite": "trixie", "date": "2026-11-08T09:03:11Z"},
        {"uri": MIRROR, "suite": "trixie-updates", "date": None},
        {"uri": SECURITY, "suite": "trixie-security", "date": "2026-11-27T02:00:00Z"},
    ]
    assert json.dumps(recorded_releases(tree))  # JSON-able: it goes into the sidecar
