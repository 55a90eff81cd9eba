"""Bootstrap a bootable Debian base image without mounting anything.

Cloud images cannot be downloaded here, so the base image is made from packages:
mmdebstrap builds a root tree of one suite of imgpipe.sources.distros, mke2fs `-d` turns
the tree into an ext4 filesystem written straight into a partition of a raw disk file
(`-E offset=`), and the suite's own GRUB boot.img + core.img (made by its grub-mkimage in
the tree, whose GRUB packages are then purged) are written into the MBR gap by hand. No
loop device, no mount, no grub-install, no GRUB on the host. The result boots with plain
SeaBIOS (no -kernel/-initrd), so the same image works under libvirt, plain qemu or a
cloud import.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgpipe.errors import BuildError, run_command
from imgpipe.sources.apt_release import recorded_releases, to_deb822, utc_iso
from imgpipe.sources.distros import Suite, UnknownSuite, default_suite, get_suite
from imgpipe.sources.grub import grub_cfg, grub_hooks, grub_images, remove_grub_files, write_embed_config

DEFAULT_SUITE = default_suite("debian")

# Bump whenever the build steps or the files written into the tree change:
# it is part of recipe_key, so cached base images are rebuilt.
RECIPE_VERSION = 6  # 5: the suite's own GRUB; deb822 sources where the suite has them; 6: nss-myhostname

# A slim base: dpkg path filters leave out what a machine image does not need. They live in the
# base (/etc/dpkg/dpkg.cfg.d/imgpipe-slim), not in the seal, because there they also filter every
# package a role installs later (nginx's docs never land) and dpkg never writes the files at all:
# nothing to delete at seal time and then trim, and the same file on every instance keeps later
# installs slim too. dpkg's database still lists every file (an SBOM or `dpkg -L` sees them all).
# The price: the filters change the cached base, so `keep` is part of recipe_key. Each group
# below is left out unless the spec's `source.bootstrap.keep` names it.
SLIM_GROUPS: dict[str, tuple[str, ...]] = {
    "docs": (
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",  # licences stay with what they cover
        "path-exclude=/usr/share/info/*",
    ),
    "man_pages": ("path-exclude=/usr/share/man/*",),
    "locales": (  # translations and locale sources beyond C and English
        "path-exclude=/usr/share/locale/*",
        "path-include=/usr/share/locale/locale.alias",
        "path-include=/usr/share/locale/en*",
        "path-exclude=/usr/share/i18n/locales/*",
        # what locale-gen needs for C, POSIX and the en_* locales (files they `copy`/`include`)
        *(
            f"path-include=/usr/share/i18n/locales/{name}"
            for name in ("C", "POSIX", "en_*", "i18n*", "iso14651_t1*", "translit_*")
        ),
        "path-exclude=/usr/share/i18n/charmaps/*",
        "path-include=/usr/share/i18n/charmaps/UTF-8.gz",
    ),
}
SLIM_CFG = "etc/dpkg/dpkg.cfg.d/imgpipe-slim"
# mmdebstrap's own hook for merged /usr (symlinks and the usr-is-merged package), as debootstrap
# does it. Without it apt picks `usrmerge` for init-system-helpers, and with it all of perl
# (~50 MB) that nothing else in the base needs.
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"

PART_START = 1 << 20  # the partition starts at 1 MiB; core.img lives in sectors 1..2047
SECTOR = 512


@dataclass(frozen=True)
class BootstrapRecipe:
    """What goes into a bootstrapped base image (its cache key is recipe_key)."""

    distro: str = "debian"
    suite: str = DEFAULT_SUITE
    extra_packages: tuple[str, ...] = ()
    disk_size_gb: int = 4  # virtual size of the base disk
    keep: tuple[str, ...] = ()  # SLIM_GROUPS the base keeps (docs, man_pages, locales)


def recipe_key(recipe: BootstrapRecipe) -> str:
    """sha256 over the canonical JSON of the recipe and RECIPE_VERSION."""
    doc = {"recipe_version": RECIPE_VERSION, **asdict(recipe)}
    doc["extra_packages"] = sorted(set(recipe.extra_packages))
    doc["keep"] = sorted(set(recipe.keep))
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def slim_filters(keep: tuple[str, ...]) -> list[str]:
    """dpkg path filters for the groups not kept, in order (dpkg: the last match wins)."""
    if unknown := sorted(set(keep) - set(SLIM_GROUPS)):
        raise BuildError(f"bootstrap keep: unknown {', '.join(unknown)} (known: {', '.join(SLIM_GROUPS)})")
    return [rule for group, rules in SLIM_GROUPS.items() if group not in keep for rule in rules]


def build_base_image(
    recipe: BootstrapRecipe,
    dest: Path,
    workdir: Path,
    log: Callable[[str], None],
    cancel: threading.Event | None = None,
) -> None:
    """Build a qcow2 at `dest` (atomically: temp name beside it, then rename)."""
    try:
        suite = get_suite(recipe.distro, recipe.suite)
    except UnknownSuite as exc:
        raise BuildError(f"bootstrap: {exc}") from None
    if recipe.disk_size_gb < 2:
        raise BuildError("bootstrap disk_size_gb must be at least 2")
    workdir.mkdir(parents=True, exist_ok=True)
    tree, raw = workdir / "tree", workdir / "disk.raw"
    partial = dest.with_name(f".{dest.name}.partial")
    root_uuid = str(uuid.uuid4())
    try:
        remove_unmounted(tree)
        remove_grub_files(workdir)  # a killed run's: never write another build's GRUB
        log(f"mmdebstrap {recipe.suite} into {tree}")
        packages = sorted(set(suite.base_packages()) | set(recipe.extra_packages))
        # mmdebstrap writes these to the tree's dpkg.cfg.d/99mmdebstrap and applies them to the
        # essential packages it extracts itself, too; _name_slim_config renames the file.
        filters = slim_filters(recipe.keep)
        embed = write_embed_config(workdir, root_uuid)
        run_command(
            [
                "mmdebstrap",
                "--variant=apt",
                "--skip=cleanup/apt/lists",
                *([f"--hook-dir={MERGED_USR_HOOK}"] if suite.merged_usr_hook else []),
                *(f"--dpkgopt={rule}" for rule in filters),
                "--include=" + ",".join(packages),
                '--customize-hook=chroot "$1" systemctl enable systemd-networkd systemd-resolved',
                # LVM snapshot reaper: no LVM here; it costs ~10 s of CPU at boot under TCG
                '--customize-hook=chroot "$1" systemctl disable e2scrub_reap.service',
                *grub_hooks(suite, embed, workdir),
                recipe.suite,
                str(tree),
            ],
            timeout=1800,
            cancel=cancel,
        )
        log("customizing the tree")
        grub = grub_images(workdir)
        _customize_tree(tree, root_uuid, suite)
        _name_slim_config(tree, filters)
        built_from = {"packages": installed_packages(tree / "var" / "lib" / "dpkg" / "status")}
        apt_sources = recorded_releases(tree)  # what nightly's freshness check compares with
        log(f"writing {recipe.disk_size_gb} GiB disk (ext4 from tree, GRUB in MBR)")
        _make_disk(raw, tree, recipe.disk_size_gb << 30, root_uuid, grub)
        log(f"converting to qcow2 at {dest}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        run_command(
            ["qemu-img", "convert", "-O", "qcow2", str(raw), str(partial)], timeout=600, cancel=cancel
        )
        write_sidecar(dest, recipe_key(recipe), built_from, apt_sources)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        remove_unmounted(tree)
        raw.unlink(missing_ok=True)
        remove_grub_files(workdir)


def installed_packages(status: Path) -> dict[str, str]:
    """name -> version:arch of every installed package in a dpkg status file: what a base
    was built from, the same on every host that bootstrapped the recipe from the same mirror."""
    packages: dict[str, str] = {}
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages[fields["Package"]] = f"{fields.get('Version', '?')}:{fields.get('Architecture', '?')}"
    return dict(sorted(packages.items()))


def write_sidecar(
    base: Path,
    key: str,
    built_from: dict[str, object],
    apt_sources: list[dict[str, str | None]] | None = None,
    now: datetime | None = None,
) -> None:
    """`<base>.json`: the recipe key, when (`built`: the date, `built_at`: the UTC time), what
    the base was built from, and `apt_sources`: each (URI, suite) of the tree's apt sources
    with the Release date its lists had. Its identity in a fingerprint
    (imgpipe.sources.identity) comes from this, not from the file's bytes; nightly's
    freshness check (imgpipe.sources.freshness) from `built_at` and `apt_sources`."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    doc: dict[str, object] = {
        "recipe": key,
        "built": when.strftime("%Y-%m-%d"),
        "built_at": utc_iso(when),
        "built_from": built_from,
    }
    if apt_sources is not None:
        doc["apt_sources"] = apt_sources
    tmp = base.with_name(f".{base.stem}.json.partial")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, base.with_suffix(".json"))


def _mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p == real or p.startswith(real + "/")]


def remove_unmounted(path: Path) -> None:
    """Remove a file or a bootstrap tree, never through a mount a killed mmdebstrap left in it
    (its /dev, /proc or /sys are the host's)."""
    if mounted := _mounts_under(path):
        raise BuildError(f"not removing {path}: still mounted there: {', '.join(mounted)}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    remove_unmounted(link)
    link.symlink_to(target)


_HOSTKEY_UNIT = """\
[Unit]
Description=Generate SSH host keys if none were provided (imgpipe)
After=cloud-init.service cloud-init-network.service
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
"""


def _customize_tree(tree: Path, root_uuid: str, suite: Suite) -> None:
    """First-boot-ready fix-ups: identity removed, networking and boot configured, apt
    sources in the suite's own format."""
    etc = tree / "etc"
    if suite.apt_sources == "deb822":
        _deb822_sources(etc / "apt")
    _write(etc / "fstab", f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n")
    _write(etc / "hostname", "localhost\n")
    # cloud-init's locale module would otherwise try (and fail) to set en_US.UTF-8.
    _write(etc / "default/locale", "LANG=C.UTF-8\n")
    _write(etc / "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    # networkd does DHCP; cloud-init must not write its own (ENI/netplan) config.
    _write(etc / "systemd/network/90-imgpipe-dhcp.network", "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
    _symlink(etc / "resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    # NoCloud only: with no seed, ds-identify disables cloud-init instead of probing
    # cloud metadata addresses. A publisher targeting a cloud must drop this file.
    _write(
        etc / "cloud/cloud.cfg.d/90-imgpipe-base.cfg",
        "network: {config: disabled}\ndatasource_list: [NoCloud, None]\n",
    )
    # Identity: a fresh machine-id and fresh SSH host keys on first boot.
    _write(etc / "machine-id", "", 0o444)
    remove_unmounted(tree / "var/lib/dbus/machine-id")
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    _write(etc / "systemd/system/imgpipe-ssh-hostkeys.service", _HOSTKEY_UNIT)
    _symlink(
        etc / "systemd/system/ssh.service.wants/imgpipe-ssh-hostkeys.service",
        "/etc/systemd/system/imgpipe-ssh-hostkeys.service",
    )
    shadow = etc / "shadow"
    lines = [
        "root:*:" + line.split(":", 2)[2] if line.startswith("root:") else line
        for line in shadow.read_text().splitlines()
    ]
    _write(shadow, "\n".join(lines) + "\n", 0o640)
    # Lists are kept: mark them fresh for Ansible's apt cache_valid_time.
    _write(tree / "var/lib/apt/periodic/update-success-stamp", "")
    _write(tree / "boot/grub/grub.cfg", grub_cfg(tree, root_uuid))


# apt's default keyring on Debian, what its installer names in Signed-By
_ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _deb822_sources(apt: Path) -> None:
    """mmdebstrap's one-line sources.list becomes sources.list.d/debian.sources, as the
    suite's installer writes it (the same URIs and suites: apt's lists keep their names).
    Left as it is when a line has options deb822 could not say the same way."""
    listed = apt / "sources.list"
    if not listed.is_file():
        return
    keyring = _ARCHIVE_KEYRING if (apt.parent.parent / _ARCHIVE_KEYRING.lstrip("/")).is_file() else None
    text = to_deb822(listed.read_text(), signed_by=keyring)
    if text is None:
        return
    _write(apt / "sources.list.d" / "debian.sources", text)
    listed.unlink()


_SLIM_HEADER = """\
# imgpipe's slim base: dpkg leaves these paths out of every package it installs, now and
# later (the last matching rule wins). dpkg's database still lists the files. To have them
# on a machine, delete this file and reinstall the packages (apt-get install --reinstall);
# to bake images with them, list docs, man_pages or locales in the spec's source.bootstrap.keep.
"""


def _name_slim_config(tree: Path, filters: list[str]) -> None:
    """mmdebstrap's --dpkgopt file becomes imgpipe-slim, with a header saying what it is."""
    written = tree / "etc/dpkg/dpkg.cfg.d/99mmdebstrap"
    if not filters:
        remove_unmounted(written)  # empty if it exists at all: we passed no dpkg options
        return
    rules = [line for line in written.read_text().splitlines() if line.strip()]
    if rules != filters:
        raise BuildError(f"{written}: expected imgpipe's dpkg path filters only, found {rules}")
    written.unlink()
    _write(tree / SLIM_CFG, _SLIM_HEADER + "\n".join(filters) + "\n")
    if any(rule.startswith("path-exclude=/usr/share/man/") for rule in filters):
        # Empty section directories, as Debian's slim container images keep them: without
        # them update-alternatives fails to link a man page a package ships elsewhere (Java).
        for section in range(1, 9):
            (tree / f"usr/share/man/man{section}").mkdir(parents=True, exist_ok=True)


def _make_disk(raw: Path, tree: Path, size: int, root_uuid: str, grub: tuple[Path, Path]) -> None:
    """Partition a sparse raw file, fill the partition from the tree, write GRUB's
    (boot.img, core.img) into the MBR and the gap after it."""
    remove_unmounted(raw)
    with raw.open("wb") as f:
        f.truncate(size)
    run_command(
        ["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)],
        input=f"label: dos\nstart={PART_START // SECTOR}, type=83, bootable\n".encode(),
    )
    # GRUB 2.06 cannot read metadata_csum_seed (incompat); orphan_file is off so the
    # fs stays readable by older e2fsprogs on hosts that inspect the image.
    run_command(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-L",
            "root",
            "-U",
            root_uuid,
            "-O",
            "^metadata_csum_seed,^orphan_file",
            "-E",
            f"offset={PART_START}",
            "-d",
            str(tree),
            str(raw),
            str((size - PART_START) // 4096),
        ],
        timeout=600,
    )
    boot_img, core = grub
    core_bytes = core.read_bytes()
    if len(core_bytes) > PART_START - SECTOR:
        raise BuildError(f"GRUB core.img is {len(core_bytes)} bytes: too big for the MBR gap")
    boot = boot_img.read_bytes()
    # boot.img loads sector 1 (its default kernel sector); diskboot.img, the first
    # sector of core.img, loads the rest from sector 2 on (its default blocklist).
    with raw.open("r+b") as f:
        f.write(boot[:440])  # keep disk signature and partition table (bytes 440..511)
        f.seek(SECTOR)
        f.write(core_bytes)
