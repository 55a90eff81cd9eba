"""What a bootstrapped tree's apt sources are, and the Release date of each suite they use,
as apt itself recorded it in the tree's lists. Pure parsing: nothing here touches the
network (sources.freshness asks the mirrors).

Every (URI, suite) of the tree's own sources counts: for a Debian stable suite mmdebstrap
writes the suite, `-updates` and `-security`, and security fixes arrive only in the last."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

RELEASE_FILES = ("InRelease", "Release")  # apt prefers the inline-signed one
HEAD_LIMIT = 64 << 10  # the Date field is near the top; never read a whole Release file
_ONE_LINE = re.compile(r"^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")
# QuoteString's set in apt's URItoFileName, plus '%' (apt quotes it too)
_APT_QUOTED = set(b'\\|{}[]<>"^~_=!@#$%^&*')


@dataclass(frozen=True)
class AptSource:
    """One suite of one archive, as the tree's sources name it."""

    uri: str  # without a trailing slash
    suite: str

    def release_url(self, name: str = "InRelease") -> str:
        """Where the suite's Release file is (a suite ending in '/' is a flat repository)."""
        if self.suite.endswith("/"):
            return f"{self.uri}/{self.suite}{name}"
        return f"{self.uri}/dists/{self.suite}/{name}"


def utc_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: object) -> datetime | None:
    """An ISO timestamp as written by utc_iso (or a plain date: midnight UTC); None if not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def uri_to_filename(url: str) -> str:
    """The name apt gives a downloaded file under /var/lib/apt/lists (its URItoFileName):
    scheme and credentials dropped, unsafe bytes %-quoted (lower-case hex), '/' -> '_'.
    `http://127.0.0.1:8080/debian/dists/bookworm/InRelease` ->
    `127.0.0.1:8080_debian_dists_bookworm_InRelease`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    out = []
    for byte in (host + parts.path).encode():
        if byte in _APT_QUOTED or byte <= 0x20 or byte >= 0x7F:
            out.append(f"%{byte:02x}")
        else:
            out.append(chr(byte))
    return "".join(out).replace("/", "_")


def _one_line(text: str) -> Iterator[AptSource]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if match := _ONE_LINE.match(line):
            yield AptSource(match.group(2).rstrip("/"), match.group(3))


def _deb822(text: str) -> Iterator[AptSource]:
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key is not None:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if not set(fields.get("types", "").split()) & {"deb", "deb-src"}:
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield AptSource(uri.rstrip("/"), suite)


# one-line options and the deb822 fields that say the same (sources.list(5))
_DEB822_OPTIONS = {
    "arch": "Architectures",
    "lang": "Languages",
    "target": "Targets",
    "signed-by": "Signed-By",
    "trusted": "Trusted",
    "pdiffs": "PDiffs",
    "by-hash": "By-Hash",
    "check-valid-until": "Check-Valid-Until",
}
_ONE_LINE_FULL = re.compile(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)((?:\s+\S+)*)$")


def to_deb822(text: str, *, signed_by: str | None = None) -> str | None:
    """One-line sources (sources.list) in deb822 (a `.sources` file): one stanza per type,
    URI, components and options, its suites in the order given. `signed_by` is the keyring
    of stanzas that name none. None when a line cannot be said the same way in deb822 (an
    option with no deb822 field, a -/+= option form): the caller keeps the one-line file."""
    stanzas: dict[tuple[str, ...], list[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _ONE_LINE_FULL.match(line)
        if match is None:
            return None
        kind, options, uri, suite, components = match.groups()
        fields: list[tuple[str, str]] = []
        for option in (options or "").split():
            name, eq, value = option.partition("=")
            if not eq or name.endswith(("-", "+")) or name.lower() not in _DEB822_OPTIONS:
                return None
            fields.append((_DEB822_OPTIONS[name.lower()], value.replace(",", " ")))
        if signed_by and not any(field == "Signed-By" for field, _ in fields):
            fields.append(("Signed-By", signed_by))
        key = (kind, uri, " ".join(components.split()), *(f"{f}: {v}" for f, v in fields))
        suites = stanzas.setdefault(key, [])
        if suite not in suites:
            suites.append(suite)
    if not stanzas:
        return None
    out = []
    for (kind, uri, components, *fields), suites in stanzas.items():
        lines = [f"Types: {kind}", f"URIs: {uri}", f"Suites: {' '.join(suites)}"]
        lines += [f"Components: {components}"] if components else []
        out.append("\n".join([*lines, *fields]) + "\n")
    return "\n".join(out)


def tree_sources(tree: Path) -> list[AptSource]:
    """Every (URI, suite) the tree's apt uses: /etc/apt/sources.list and sources.list.d's
    `*.list` (one-line format) and `*.sources` (deb822), in apt's order, each once."""
    apt = tree / "etc" / "apt"
    found: list[AptSource] = []
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            found += _deb822(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            found += _one_line(text)
    return list(dict.fromkeys(found))


def release_date(lines: Iterable[str]) -> datetime | None:
    """The `Date:` of a Release or InRelease file (its first paragraph), in UTC; None if it
    has none. Reads lines only until it has the date or the paragraph ends."""
    state = "start"
    for raw in lines:
        line = raw.rstrip("\r\n")
        if state == "start":
            state = "body"
            if line.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
                state = "armor"
                continue
        if state == "armor":  # the armor headers (Hash: ...) end at the first blank line
            if not line.strip():
                state = "body"
            continue
        if not line.strip() or line.startswith("-----BEGIN PGP SIGNATURE"):
            return None
        if line.lower().startswith("date:"):
            try:
                when = parsedate_to_datetime(line.split(":", 1)[1].strip())
            except (TypeError, ValueError, IndexError):
                return None
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return None


def _head_lines(path: Path) -> list[str]:
    with path.open("rb") as fh:
        return fh.read(HEAD_LIMIT).decode(errors="replace").splitlines()


def recorded_releases(tree: Path) -> list[dict[str, str | None]]:
    """For each of the tree's sources: its URI, suite and the Release date in the lists apt
    downloaded into the tree (None when the tree holds no Release file for it)."""
    lists = tree / "var" / "lib" / "apt" / "lists"
    recorded: list[dict[str, str | None]] = []
    for source in tree_sources(tree):
        date = None
        for name in RELEASE_FILES:
            path = lists / uri_to_filename(source.release_url(name))
            if path.is_file():
                when = release_date(_head_lines(path))
                date = utc_iso(when) if when else None
                break
        recorded.append({"uri": source.uri, "suite": source.suite, "date": date})
    return recorded
