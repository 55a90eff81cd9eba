"""Bootstrap a bootable Debian base image without mounting anything.

Cloud images cannot be downloaded here, so the base image is made from packages:
mmdebstrap builds a root tree, mke2fs `-d` turns the tree into an ext4 filesystem
written straight into a partition of a raw disk file (`-E offset=`), and GRUB's
boot.img + core.img are written into the MBR gap by hand. No loop device, no mount,
no grub-install. The result boots with plain SeaBIOS (no -kernel/-initrd), so the
same image works under libvirt, plain qemu or a cloud import.
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
from imgpipe.sources.apt_release import recorded_releases, utc_iso

# Bump whenever the build steps or the files written into the tree change:
# it is part of recipe_key, so cached base images are rebuilt.
RECIPE_VERSION = 4

BASE_PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "python3",
    "python3-apt",
    "systemd-sysv",
    "dbus",
    "linux-image-cloud-amd64",
    "cloud-init",
    "cloud-guest-utils",
    "fdisk",
    "e2fsprogs",
    "systemd-resolved",
    "ca-certificates",
    "sudo",
)

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

# Embedded in core.img: the tree holds no GRUB modules, so everything needed to find
# the root fs, read grub.cfg and boot Linux must be inside core.img.
GRUB_MODULES: tuple[str, ...] = (
    "biosdisk",
    "part_msdos",
    "ext2",
    "search",
    "search_fs_uuid",
    "normal",
    "configfile",
    "linux",
    "boot",
    "echo",
    "test",
    "gzio",
    "serial",
    "terminal",
    "minicmd",
)
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
PART_START = 1 << 20  # the partition starts at 1 MiB; core.img lives in sectors 1..2047
SECTOR = 512


@dataclass(frozen=True)
class BootstrapRecipe:
    """What goes into a bootstrapped base image (its cache key is recipe_key)."""

    distro: str = "debian"
    suite: str = "bookworm"
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
    if recipe.distro != "debian":
        raise BuildError(f"bootstrap supports distro 'debian' only, not {recipe.distro!r}")
    if recipe.disk_size_gb < 2:
        raise BuildError("bootstrap disk_size_gb must be at least 2")
    workdir.mkdir(parents=True, exist_ok=True)
    tree, raw = workdir / "tree", workdir / "disk.raw"
    partial = dest.with_name(f".{dest.name}.partial")
    root_uuid = str(uuid.uuid4())
    try:
        remove_unmounted(tree)
        log(f"mmdebstrap {recipe.suite} into {tree}")
        packages = sorted(set(BASE_PACKAGES) | set(recipe.extra_packages))
        # mmdebstrap writes these to the tree's dpkg.cfg.d/99mmdebstrap and applies them to the
        # essential packages it extracts itself, too; _name_slim_config renames the file.
        filters = slim_filters(recipe.keep)
        run_command(
            [
                "mmdebstrap",
                "--variant=apt",
                "--skip=cleanup/apt/lists",
                f"--hook-dir={MERGED_USR_HOOK}",
                *(f"--dpkgopt={rule}" for rule in filters),
                "--include=" + ",".join(packages),
                '--customize-hook=chroot "$1" systemctl enable systemd-networkd systemd-resolved',
                # LVM snapshot reaper: no LVM here; it costs ~10 s of CPU at boot under TCG
                '--customize-hook=chroot "$1" systemctl disable e2scrub_reap.service',
                recipe.suite,
                str(tree),
            ],
            timeout=1800,
            cancel=cancel,
        )
        log("customizing the tree")
        _customize_tree(tree, root_uuid)
        _name_slim_config(tree, filters)
        built_from = {"packages": installed_packages(tree / "var" / "lib" / "dpkg" / "status")}
        apt_sources = recorded_releases(tree)  # what nightly's freshness check compares with
        log(f"writing {recipe.disk_size_gb} GiB disk (ext4 from tree, GRUB in MBR)")
        _make_disk(raw, tree, recipe.disk_size_gb << 30, root_uuid, workdir)
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
After=cloud-init.service
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
"""


def _customize_tree(tree: Path, root_uuid: str) -> None:
    """First-boot-ready fix-ups: identity removed, networking and boot configured."""
    etc = tree / "etc"
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
    _write(tree / "boot/grub/grub.cfg", _grub_cfg(tree, root_uuid))


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


def _grub_cfg(tree: Path, root_uuid: str) -> str:
    """grub.cfg booting /vmlinuz (kept current by the kernel's postinst symlinks)."""
    kernel, initrd = "/vmlinuz", "/initrd.img"
    if not (tree / "vmlinuz").is_symlink():  # no symlinks: point at the newest files
        kernel = "/boot/" + sorted(p.name for p in (tree / "boot").glob("vmlinuz-*"))[-1]
        initrd = "/boot/" + sorted(p.name for p in (tree / "boot").glob("initrd.img-*"))[-1]
    return (
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\nterminal_output serial console\n"
        "set default=0\nset timeout=0\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"  linux {kernel} root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200\n"
        f"  initrd {initrd}\n"
        "}\n"
    )


def _make_disk(raw: Path, tree: Path, size: int, root_uuid: str, workdir: Path) -> None:
    """Partition a sparse raw file, fill the partition from the tree, write GRUB."""
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
    embed = workdir / "grub-embed.cfg"
    _write(embed, f"search --no-floppy --fs-uuid --set=root {root_uuid}\nset prefix=($root)/boot/grub\n")
    core = workdir / "core.img"
    run_command(
        [
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-d",
            str(GRUB_DIR),
            "-o",
            str(core),
            "-c",
            str(embed),
            "-p",
            "/boot/grub",
            *GRUB_MODULES,
        ]
    )
    core_bytes = core.read_bytes()
    if len(core_bytes) > PART_START - SECTOR:
        raise BuildError(f"GRUB core.img is {len(core_bytes)} bytes: too big for the MBR gap")
    boot = (GRUB_DIR / "boot.img").read_bytes()
    # boot.img loads sector 1 (its default kernel sector); diskboot.img, the first
    # sector of core.img, loads the rest from sector 2 on (its default blocklist).
    with raw.open("r+b") as f:
        f.write(boot[:440])  # keep disk signature and partition table (bytes 440..511)
        f.seek(SECTOR)
        f.write(core_bytes)
    core.unlink()
    embed.unlink()
