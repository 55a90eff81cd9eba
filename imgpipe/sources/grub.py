"""The suite's own GRUB for a bootstrapped base: no GRUB on the host, no grub-install.

In the tree, mmdebstrap hooks run the suite's grub-mkimage to make a core.img that holds
everything needed to find the root filesystem by UUID, read /boot/grub/grub.cfg and boot
Linux; core.img and the suite's boot.img are copied out, then the suite's GRUB packages are
purged (the image keeps no bootloader tooling). bootstrap._make_disk writes boot.img into
the MBR and core.img into the gap before the partition; grub.cfg boots /vmlinuz."""

from __future__ import annotations

import shlex
from pathlib import Path

from imgpipe.errors import BuildError
from imgpipe.sources.distros import Suite

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
GRUB_DIR = "/usr/lib/grub/i386-pc"  # in the tree
GRUB_STAGING = "tmp/imgpipe-grub"  # in the tree: where grub-mkimage runs (mmdebstrap empties /tmp)
EMBED_CFG = "grub-embed.cfg"  # in the work dir, beside the core.img and boot.img copied out
MADE = ("boot.img", "core.img")


def write_embed_config(workdir: Path, root_uuid: str) -> Path:
    """core.img's embedded config: the root filesystem by UUID, and where grub.cfg is."""
    embed = workdir / EMBED_CFG
    embed.write_text(f"search --no-floppy --fs-uuid --set=root {root_uuid}\nset prefix=($root)/boot/grub\n")
    return embed


def grub_hooks(suite: Suite, embed: Path, workdir: Path) -> list[str]:
    """mmdebstrap hooks that make core.img with the suite's own grub-mkimage (the embedded
    config finds the root filesystem by UUID), copy it and the suite's boot.img out to
    `workdir`, then purge the suite's GRUB packages: the image keeps no bootloader
    tooling, as before."""
    staging = f'"$1/{GRUB_STAGING}"'
    mkimage = " ".join(
        [
            "grub-mkimage -O i386-pc",
            f"-d {GRUB_DIR}",
            f"-o /{GRUB_STAGING}/core.img",
            f"-c /{GRUB_STAGING}/embed.cfg",
            "-p /boot/grub",
            *GRUB_MODULES,
        ]
    )
    return [
        f"--customize-hook=mkdir -p {staging} && cp {shlex.quote(str(embed))} {staging}/embed.cfg",
        f'--customize-hook=chroot "$1" {mkimage} && cp "$1/{GRUB_STAGING}/core.img" "$1{GRUB_DIR}/boot.img" '
        f"{shlex.quote(str(workdir))}/ && rm -r {staging}",
        '--customize-hook=chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get purge --yes --autoremove '
        + " ".join(suite.grub),
    ]


def remove_grub_files(workdir: Path) -> None:
    for name in (EMBED_CFG, *MADE):
        (workdir / name).unlink(missing_ok=True)


def grub_images(workdir: Path) -> tuple[Path, Path]:
    """(boot.img, core.img) the suite's GRUB made in `workdir`."""
    found = (workdir / MADE[0], workdir / MADE[1])
    for path in found:
        if not path.is_file():
            raise BuildError(f"bootstrap: the suite's GRUB made no {path.name} in {workdir}")
    return found


def grub_cfg(tree: Path, root_uuid: str) -> str:
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
