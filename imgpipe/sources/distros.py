"""The distributions and suites a bootstrap source can name, and what differs between them.

One table (DISTROS): adding a suite is a data change here. The spec model validates
`source.bootstrap.{distro,suite}` against it (and takes its default from it), the bootstrap
reads its package names and apt sources format from it, and the tests bake what it lists.
A suite's release date and its Release files are the mirror's business, not this table's:
mmdebstrap picks the mirror, and sources.freshness compares Release dates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Suite:
    """One release of a distribution and what a base of it is made of."""

    name: str  # codename, as mmdebstrap and apt name it
    version: str  # the release's number (base-files' major version on Debian)
    stable: bool  # the current stable release: the default suite of its distribution
    kernel: str  # the kernel metapackage (tracks the suite's own kernel ABI)
    kernel_series: str  # the upstream series of the suite's kernel: linux-image-<series>.* packages
    grub: tuple[str, ...]  # the suite's GRUB: i386-pc modules and grub-mkimage (used, then purged)
    cloud_init: tuple[str, ...]  # cloud-init and what grows the root partition on first boot
    packages: tuple[str, ...]  # everything else the base needs on this suite
    security_suite: str  # where security fixes arrive (a suite of its own in the tree's sources)
    updates_suite: str | None  # stable updates, when the suite has them
    apt_sources: Literal["one-line", "deb822"]  # the format of the image's apt sources
    merged_usr_hook: bool  # mmdebstrap's merged-usr hook (the /usr symlinks as debootstrap makes them)

    def base_packages(self) -> tuple[str, ...]:
        """What mmdebstrap installs besides the essential set (sorted, once each)."""
        return tuple(sorted({self.kernel, *self.grub, *self.cloud_init, *self.packages}))

    def suites(self) -> tuple[str, ...]:
        """The suites the image's apt sources name: the release, its updates, its security."""
        return tuple(s for s in (self.name, self.updates_suite, self.security_suite) if s)


# What every Debian base has, whatever the suite: SSH, Python for Ansible (python3-apt for
# its apt module), systemd with networkd + resolved, dbus for ACPI shutdown, the tools
# cloud-init's growpart and resize2fs need, sudo for a non-root build user, and
# libnss-myhostname so the machine's own hostname resolves without DNS: without it sudo
# looks the hostname up in DNS on every call (trixie's resolved does not answer it), 8 s
# each under TCG, which made Ansible three times slower on trixie than on bookworm.
_DEBIAN_COMMON = (
    "libnss-myhostname",
    "openssh-server",
    "python3",
    "python3-apt",
    "systemd-sysv",
    "systemd-resolved",
    "dbus",
    "fdisk",
    "e2fsprogs",
    "ca-certificates",
    "sudo",
)


def _debian(
    name: str, version: str, kernel_series: str, *, stable: bool, apt_sources: Literal["one-line", "deb822"]
) -> Suite:
    return Suite(
        name=name,
        version=version,
        stable=stable,
        kernel="linux-image-cloud-amd64",
        kernel_series=kernel_series,
        grub=("grub-pc-bin",),
        cloud_init=("cloud-init", "cloud-guest-utils"),
        packages=_DEBIAN_COMMON,
        security_suite=f"{name}-security",
        updates_suite=f"{name}-updates",
        apt_sources=apt_sources,
        merged_usr_hook=True,
    )


DISTROS: dict[str, dict[str, Suite]] = {
    "debian": {
        "bookworm": _debian("bookworm", "12", "6.1", stable=False, apt_sources="one-line"),
        # trixie's installer and cloud images write deb822 sources (debian.sources)
        "trixie": _debian("trixie", "13", "6.12", stable=True, apt_sources="deb822"),
    },
}


class UnknownSuite(ValueError):
    """A distro or suite the table does not list; the message names the known ones."""


def distro_names() -> tuple[str, ...]:
    return tuple(DISTROS)


def suite_names(distro: str = "debian") -> tuple[str, ...]:
    """The suites of `distro`, oldest first (the table's order)."""
    return tuple(_suites(distro))


def default_suite(distro: str = "debian") -> str:
    """The distribution's current stable release."""
    stable = [s.name for s in _suites(distro).values() if s.stable]
    if len(stable) != 1:  # a table error, caught by the unit tests
        raise RuntimeError(f"distros: {distro} needs exactly one stable suite, has {stable}")
    return stable[0]


def get_suite(distro: str, suite: str) -> Suite:
    """The table's entry, or UnknownSuite listing what is known."""
    known = _suites(distro)
    if suite not in known:
        raise UnknownSuite(f"unknown {distro} suite {suite!r} (known: {', '.join(known)})")
    return known[suite]


def _suites(distro: str) -> dict[str, Suite]:
    if distro not in DISTROS:
        raise UnknownSuite(f"unknown distro {distro!r} (known: {', '.join(DISTROS)})")
    return DISTROS[distro]
