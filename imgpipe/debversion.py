"""Debian version comparison, as dpkg does it (deb-version(7), dpkg's lib/dpkg/version.c).

python-debian and apt_pkg are not dependencies; this is the whole algorithm, and
tests/unit/test_diff.py checks it against `dpkg --compare-versions`."""

from __future__ import annotations

from typing import NamedTuple

_DIGITS = frozenset("0123456789")


class DebVersion(NamedTuple):
    epoch: int
    upstream: str
    revision: str


def parse_version(version: str) -> DebVersion:
    """Split `[epoch:]upstream[-revision]`; the revision is what follows the last hyphen."""
    text = version.strip()
    epoch = 0
    if ":" in text:
        head, text = text.split(":", 1)
        if not head or not set(head) <= _DIGITS:
            raise ValueError(f"invalid Debian version {version!r}: epoch {head!r} is not a number")
        epoch = int(head)
    upstream, _, revision = text.rpartition("-") if "-" in text else (text, "", "")
    if not upstream:
        raise ValueError(f"invalid Debian version {version!r}: empty upstream version")
    return DebVersion(epoch, upstream, revision)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version `a` sorts before, equal to or after `b`."""
    va, vb = parse_version(a), parse_version(b)
    if va.epoch != vb.epoch:
        return -1 if va.epoch < vb.epoch else 1
    return _compare_part(va.upstream, vb.upstream) or _compare_part(va.revision, vb.revision)


def _order(char: str) -> int:
    """dpkg's weight of one character of a non-digit run: '~' before the end of the
    string, which is before letters, which are before every other character."""
    if char == "~":
        return -1
    if not char or char in _DIGITS:
        return 0
    if char.isascii() and char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """Alternate non-digit runs (compared by _order) and digit runs (compared as numbers)."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and a[i] not in _DIGITS) or (j < len(b) and b[j] not in _DIGITS):
            ca = _order(a[i] if i < len(a) else "")
            cb = _order(b[j] if j < len(b) else "")
            if ca != cb:
                return -1 if ca < cb else 1
            i, j = i + 1, j + 1
        start_a, start_b = i, j
        while i < len(a) and a[i] in _DIGITS:
            i += 1
        while j < len(b) and b[j] in _DIGITS:
            j += 1
        na, nb = int(a[start_a:i] or "0"), int(b[start_b:j] or "0")
        if na != nb:
            return -1 if na < nb else 1
    return 0
