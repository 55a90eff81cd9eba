"""The slim base: dpkg path filters leave docs, man pages and foreign locales out of every
package (a role's too) unless the spec keeps them, and never anything a package needs to
run. The filters are checked against the real dpkg: a made-up package is installed into a
scratch root with them."""

import shutil
import subprocess
from pathlib import Path

import pytest

from imgpipe.errors import BuildError, SpecError
from imgpipe.sources import bootstrap
from imgpipe.sources.bootstrap import (
    MERGED_USR_HOOK,
    SLIM_CFG,
    BootstrapRecipe,
    _name_slim_config,
    recipe_key,
    slim_filters,
)
from imgpipe.spec import load_spec
from tests.conftest import write

NEEDED = {  # what a package needs to run or to be accounted for: never filtered
    "usr/sbin/webd",
    "etc/webd/webd.conf",
    "usr/lib/systemd/system/webd.service",
    "usr/lib/x86_64-linux-gnu/libwebd.so.1",
    "usr/share/webd/html/index.html",
    "usr/share/doc/webd/copyright",
    "usr/share/locale/locale.alias",
    "usr/share/i18n/SUPPORTED",
}
GROUPS = {
    "docs": {
        "usr/share/doc/webd/changelog.Debian.gz",
        "usr/share/doc/webd/README",
        "usr/share/info/webd.info.gz",
    },
    "man_pages": {"usr/share/man/man8/webd.8.gz", "usr/share/man/de/man8/webd.8.gz"},
    "locales": {
        "usr/share/locale/de/LC_MESSAGES/webd.mo",
        "usr/share/i18n/locales/de_DE",
        "usr/share/i18n/charmaps/ISO-8859-1.gz",
    },
}
ENGLISH = {  # kept with the locales group left out: C and English still work
    "usr/share/locale/en_GB/LC_MESSAGES/webd.mo",
    "usr/share/i18n/locales/C",
    "usr/share/i18n/locales/en_US",
    "usr/share/i18n/locales/en_GB",
    "usr/share/i18n/locales/i18n",
    "usr/share/i18n/locales/i18n_ctype",
    "usr/share/i18n/locales/iso14651_t1",
    "usr/share/i18n/locales/iso14651_t1_common",
    "usr/share/i18n/locales/translit_combining",
    "usr/share/i18n/charmaps/UTF-8.gz",
}
ALL = NEEDED | ENGLISH | set().union(*GROUPS.values())


@pytest.fixture(scope="module")
def webd_deb(tmp_path_factory):
    if not shutil.which("dpkg-deb"):
        pytest.fail("dpkg-deb is missing: imgpipe's bootstrap needs a Debian host")
    src = tmp_path_factory.mktemp("webd")
    for rel in ALL:
        write(src / rel, f"{rel}\n")
    write(
        src / "DEBIAN" / "control",
        "Package: webd\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t.invalid>\n"
        "Description: a package with a bit of everything\n",
    )
    deb = src.parent / "webd.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(src), str(deb)], check=True)
    return deb


def install(deb: Path, root: Path, keep: tuple[str, ...]) -> set[str]:
    """Install with the base's filters as dpkg options; the files that landed."""
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").write_text("")
    options = [f"--{rule}" for rule in slim_filters(keep)]
    subprocess.run(
        ["dpkg", f"--root={root}", "--log=/dev/null", "--force-not-root", *options, "--install", str(deb)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-L", "webd"], capture_output=True, text=True, check=True
    ).stdout
    assert {line.lstrip("/") for line in listed.splitlines()} >= ALL, "dpkg's database lists every file"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and admin not in p.parents}


def test_slim_by_default_keeps_what_runs_copyright_and_english(webd_deb, tmp_path):
    assert install(webd_deb, tmp_path, ()) == NEEDED | ENGLISH


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_kept_group_lands_whole(webd_deb, tmp_path, group):
    assert install(webd_deb, tmp_path, (group,)) == NEEDED | ENGLISH | GROUPS[group]


def test_keeping_everything_filters_nothing(webd_deb, tmp_path):
    assert slim_filters(tuple(GROUPS)) == []
    assert install(webd_deb, tmp_path, tuple(GROUPS)) == ALL


def test_keep_is_part_of_the_cache_key_in_any_order():
    slim, docs = recipe_key(BootstrapRecipe()), recipe_key(BootstrapRecipe(keep=("docs",)))
    assert slim != docs
    assert recipe_key(BootstrapRecipe(keep=("locales", "docs"))) == recipe_key(
        BootstrapRecipe(keep=("docs", "locales", "docs"))
    )
    with pytest.raises(BuildError, match="unknown fonts"):
        slim_filters(("fonts",))


def test_spec_keep_takes_the_groups_and_refuses_others(tmp_path):
    spec = (
        "imgpipe: 1\nname: web\nsource:\n  bootstrap: {keep: [%s]}\ntargets:\n  local: {builder: libvirt}\n"
    )
    loaded = load_spec(write(tmp_path / "a.yml", spec % "docs, locales"))
    assert loaded.spec.source.bootstrap.keep == ("docs", "locales")
    assert set(loaded.spec.source.bootstrap.keep) <= set(bootstrap.SLIM_GROUPS)
    with pytest.raises(SpecError, match="source.bootstrap.keep"):
        load_spec(write(tmp_path / "b.yml", spec % "manpages"))


def test_mmdebstrap_gets_the_filters_and_merged_usr_without_usrmerge(tmp_path, monkeypatch):
    """usrmerge would pull in all of perl; mmdebstrap's merged-usr hook does without."""
    calls = []

    def record(argv, **kwargs):
        calls.append(argv)
        raise RuntimeError("stop after mmdebstrap")

    monkeypatch.setattr(bootstrap, "run_command", record)
    with pytest.raises(RuntimeError, match="stop after"):
        bootstrap.build_base_image(
            BootstrapRecipe(keep=("man_pages",)), tmp_path / "b.qcow2", tmp_path, print
        )
    (argv,) = calls
    assert argv[0] == "mmdebstrap" and f"--hook-dir={MERGED_USR_HOOK}" in argv
    assert (Path(MERGED_USR_HOOK) / "setup00.sh").is_file()
    assert [a.removeprefix("--dpkgopt=") for a in argv if a.startswith("--dpkgopt=")] == slim_filters(
        ("man_pages",)
    )
    assert "--include=usrmerge" not in " ".join(argv)


def test_the_tree_names_its_filters_and_keeps_man_sections(tmp_path):
    filters = slim_filters(())
    write(tmp_path / "etc/dpkg/dpkg.cfg.d/99mmdebstrap", "\n".join(filters) + "\n")
    _name_slim_config(tmp_path, filters)
    assert not (tmp_path / "etc/dpkg/dpkg.cfg.d/99mmdebstrap").exists()
    text = (tmp_path / SLIM_CFG).read_text()
    assert text.startswith("# imgpipe's slim base") and text.splitlines()[-len(filters) :] == filters
    assert all((tmp_path / f"usr/share/man/man{n}").is_dir() for n in range(1, 9))

    write(tmp_path / "etc/dpkg/dpkg.cfg.d/99mmdebstrap", "force-unsafe-io\n")
    with pytest.raises(BuildError, match="dpkg path filters only"):
        _name_slim_config(tmp_path, filters)


def test_the_spec_keep_setting_reaches_the_base_it_bakes_on(tmp_path, monkeypatch):
    """`source.bootstrap.keep` picks another cached base, and the manifest says so."""
    from imgpipe.events import Emitter, NullSink
    from imgpipe.sources import resolve_source
    from imgpipe.spec import load_spec
    from tests.conftest import write

    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    built = []
    monkeypatch.setattr(
        "imgpipe.sources.bootstrap.build_base_image",
        lambda recipe, base, *args: (built.append(recipe), base.write_bytes(b"base")),
    )
    spec = (
        "imgpipe: 1\nname: k\nsource:\n  bootstrap: {{keep: {keep}}}\n"
        "targets:\n  local: {{builder: libvirt}}\n"
    )
    emit = Emitter(NullSink(), "t")
    slim = resolve_source(load_spec(write(tmp_path / "a.yml", spec.format(keep="[]"))), emit)
    docs = resolve_source(load_spec(write(tmp_path / "b.yml", spec.format(keep="[docs]"))), emit)
    assert [r.keep for r in built] == [(), ("docs",)]
    assert slim.path != docs.path and docs.record["keep"] == ["docs"] and slim.record["keep"] == []


def test_a_base_records_what_it_was_built_from_so_its_identity_is_the_same_on_every_host(tmp_path):
    """Two hosts that bootstrap one recipe get different bytes (filesystem UUIDs, times) but
    the same packages: the sidecar makes their bases one identity."""
    from imgpipe.sources.bootstrap import installed_packages, write_sidecar
    from imgpipe.sources.identity import base_identity

    status = tmp_path / "status"
    status.write_text(
        "Package: nginx-light\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22.1-9\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n"
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\n"
        "Description: a shell\n continued: line\n"
    )
    built_from = {"packages": installed_packages(status)}
    assert built_from["packages"] == {"bash": "5.2.15-2+b7:amd64", "nginx-light": "1.22.1-9:amd64"}
    identities = []
    for host in ("a", "b"):
        base = tmp_path / host / "debian-bookworm-0123.qcow2"
        base.parent.mkdir()
        base.write_bytes(f"bytes of host {host}".encode())
        write_sidecar(base, "key", built_from)
        identities.append(base_identity(base, "key")[0])
    assert identities[0] == identities[1] and identities[0].startswith("built-from:")
    assert base_identity(tmp_path / "a" / "debian-bookworm-0123.qcow2", "other-key")[0].startswith("sha256:")
