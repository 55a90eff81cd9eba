"""Distro updates flow into nightly images: a cached bootstrap base goes stale when it is
older than `rebuild.base_max_age_days`, or when any suite its own apt sources use (for
Debian the suite, `-updates` and `-security`) has a Release newer than the one its lists
came from. The mirrors asked are the ones the base's sidecar recorded from its tree, never
a name written here. A stale base is rebuilt once, as a new generation, shared by every
spec on its recipe; old generations go once nothing uses them (sources.generations)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.errors import Interrupted, as_imgpipe_error
from imgpipe.sources.apt_release import HEAD_LIMIT, RELEASE_FILES, AptSource, parse_iso, release_date

if TYPE_CHECKING:
    from imgpipe.sources.bootstrap import BootstrapRecipe
    from imgpipe.spec.load import LoadedSpec

FETCH_TIMEOUT_S = 15.0
FETCH_WORKERS = 8


class ReleaseUnknown(Exception):
    """A suite's current Release date could not be read (mirror down, no such file)."""


class StaleReason(StrEnum):
    TOO_OLD = "too_old"
    NEWER_RELEASE = "newer_release"


@dataclass(frozen=True)
class Staleness:
    """Why a base is stale, in words a nightly summary can print."""

    reason: StaleReason
    detail: str

    def __str__(self) -> str:
        return self.detail


def _read_head(response: Any) -> list[str]:
    """Lines of a Release file's head: up to the end of its first paragraph or HEAD_LIMIT."""
    lines: list[str] = []
    size = 0
    while size < HEAD_LIMIT:
        raw = response.readline(HEAD_LIMIT - size)
        if not raw:
            break
        size += len(raw)
        line = raw.decode(errors="replace")
        lines.append(line)
        if line.lower().startswith("date:"):
            break
    return lines


def fetch_release_date(source: AptSource, timeout: float = FETCH_TIMEOUT_S) -> datetime:
    """The Date of the suite's Release as its archive publishes it now: InRelease, else
    Release, over HTTP(S) (or a file: archive). Raises ReleaseUnknown, never anything else."""
    scheme = source.uri.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "file"):
        raise ReleaseUnknown(f"{scheme}: archives are not checked")
    problems = []
    for name in RELEASE_FILES:
        url = source.release_url(name)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the base's own
                when = release_date(_read_head(response))
        except urllib.error.HTTPError as exc:
            problems.append(f"{name}: HTTP {exc.code}")
            if exc.code == 404:
                continue
            break
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad URL
            problems.append(f"{name}: {getattr(exc, 'reason', None) or exc}")
            if isinstance(getattr(exc, "reason", None), FileNotFoundError):  # a file: archive
                continue
            break
        if when is None:
            raise ReleaseUnknown(f"{url} has no Date field")
        return when
    raise ReleaseUnknown(f"{source.uri} {source.suite}: " + "; ".join(problems))


class ReleaseDates:
    """Current Release dates, each (URI, suite) fetched once per instance (one nightly run
    checks many specs, and bases of many recipes share their suites); many at once."""

    def __init__(self, fetch: Callable[[AptSource], datetime] = fetch_release_date) -> None:
        self._fetch = fetch
        self._known: dict[AptSource, datetime | ReleaseUnknown] = {}
        self._lock = threading.Lock()

    def get_many(self, sources: Iterable[AptSource]) -> dict[AptSource, datetime | ReleaseUnknown]:
        wanted = list(dict.fromkeys(sources))
        with self._lock:
            missing = [s for s in wanted if s not in self._known]
        if missing:
            with ThreadPoolExecutor(min(FETCH_WORKERS, len(missing)), thread_name_prefix="release") as pool:
                results = list(pool.map(self._one, missing))
            with self._lock:
                self._known.update(zip(missing, results, strict=True))
        with self._lock:
            return {s: self._known[s] for s in wanted}

    def _one(self, source: AptSource) -> datetime | ReleaseUnknown:
        try:
            return self._fetch(source)
        except ReleaseUnknown as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a mirror problem is a warning, never a traceback
            return ReleaseUnknown(f"{source.uri} {source.suite}: {type(exc).__name__}: {exc}")


PROCESS_RELEASES = ReleaseDates()  # the default: one fetch per (URI, suite) per process


def _sidecar(base: Path) -> dict[str, Any]:
    import json

    try:
        doc = json.loads(base.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def built_at(base: Path, sidecar: dict[str, Any] | None = None) -> datetime:
    """When a base was made: its sidecar's built_at, else its `built` date, else its mtime."""
    sidecar = _sidecar(base) if sidecar is None else sidecar
    when = parse_iso(sidecar.get("built_at")) or parse_iso(sidecar.get("built"))
    return when or datetime.fromtimestamp(base.stat().st_mtime, UTC)


def _show(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def base_staleness(
    base: Path,
    max_age_days: int,
    now: datetime,
    *,
    fetch: ReleaseDates | None = None,
    warn: Callable[[str], None] | None = None,
) -> Staleness | None:
    """Why `base` is stale, or None when it is fresh. Too old: built more than max_age_days
    before `now`. Newer Release: a suite of the base's recorded apt sources has a Release
    dated after the one its lists had (or after the base was made, where its lists had
    none). A suite whose archive can't be asked makes the base's freshness unknown: `warn`
    is told and the base counts as fresh (a network blip rebuilds nothing); max-age still
    applies. A base without recorded sources (an older imgpipe's) is judged by age only."""
    warn = warn or (lambda _text: None)
    sidecar = _sidecar(base)
    made = built_at(base, sidecar)
    if now - made > timedelta(days=max_age_days):
        return Staleness(
            StaleReason.TOO_OLD, f"built {_show(made)}, more than the {max_age_days} days allowed"
        )
    recorded = [e for e in sidecar.get("apt_sources") or [] if isinstance(e, dict) and e.get("uri")]
    if not recorded:
        return None
    sources = {AptSource(str(e["uri"]), str(e.get("suite"))): parse_iso(e.get("date")) for e in recorded}
    current = (fetch or PROCESS_RELEASES).get_many(sources)
    for source, had in sources.items():
        now_dated = current[source]
        if isinstance(now_dated, ReleaseUnknown):
            warn(f"base {base.name}: freshness of {source.suite} unknown ({now_dated}); kept")
            continue
        if now_dated > (had or made):
            was = f"the base's {_show(had)}" if had else f"the base, built {_show(made)}"
            return Staleness(
                StaleReason.NEWER_RELEASE,
                f"suite {source.suite} at {source.uri} has a Release dated {_show(now_dated)}, "
                f"newer than {was}",
            )
    return None


class RefreshState(StrEnum):
    FRESH = "fresh"
    ABSENT = "absent"  # none cached yet: the first bake bootstraps it
    REBUILT = "rebuilt"
    REBUILT_ELSEWHERE = "rebuilt elsewhere"  # another runner rebuilt it while this one waited
    FAILED = "failed"  # stale, and the rebuild failed: bakes go on with the old base


@dataclass
class BaseRefresh:
    """One recipe's current base as nightly found it, and what it did about it."""

    recipe: str  # the recipe key
    stem: str  # the file-name stem of all its generations
    specs: list[str]
    max_age_days: int  # the smallest among the specs sharing the base
    base: str | None = None  # the base checked (file name); None: none cached yet
    built: str | None = None  # when the base checked was made
    state: RefreshState = RefreshState.FRESH
    stale: str | None = None  # why it was stale
    new_base: str | None = None  # the generation that replaced it
    removed: list[str] = field(default_factory=list)  # old generations removed after
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def summary(self) -> str:
        name = self.base or self.stem
        specs = f" (specs: {', '.join(self.specs)})"
        text = {
            RefreshState.FRESH: f"{name}: fresh (built {self.built}, max {self.max_age_days} days)",
            RefreshState.ABSENT: f"{name}: not cached yet; the first bake bootstraps it",
            RefreshState.REBUILT: f"{name}: stale ({self.stale}); rebuilt as {self.new_base}",
            RefreshState.REBUILT_ELSEWHERE: f"{name}: stale ({self.stale}); another runner rebuilt it: "
            f"{self.new_base}",
            RefreshState.FAILED: f"{name}: stale ({self.stale}); rebuild failed, bakes use it: {self.error}",
        }[self.state]
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s): {self.warnings[0]}"
        if self.removed:
            text += f"; removed old {', '.join(self.removed)}"
        return text + specs

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value, "summary": self.summary}


def _uses_base(loaded: LoadedSpec) -> bool:
    """A spec builds on a bootstrap base when its source is one and some target does not
    start from an AMI (see identity.source_identity)."""
    if loaded.spec.source.image is not None or loaded.spec.source.parent is not None:
        return False
    return any(
        not (hasattr(s, "source_ami") or hasattr(s, "source_ami_filter")) for s in loaded.targets.values()
    )


def _groups(specs: Sequence[LoadedSpec]) -> dict[str, tuple[BootstrapRecipe, list[LoadedSpec]]]:
    from imgpipe.sources.bootstrap import recipe_key
    from imgpipe.sources.identity import bootstrap_recipe

    groups: dict[str, tuple[BootstrapRecipe, list[LoadedSpec]]] = {}
    for loaded in specs:
        if _uses_base(loaded):
            recipe = bootstrap_recipe(loaded)
            groups.setdefault(recipe_key(recipe), (recipe, []))[1].append(loaded)
    return groups


def refresh_stale_bases(
    loaded_specs: Sequence[LoadedSpec],
    log: Callable[[str], None],
    cancel: threading.Event,
    now: datetime | None = None,
    *,
    fetch: ReleaseDates | None = None,
) -> list[BaseRefresh]:
    """Check the current base of every recipe the specs use, once (with the smallest
    `rebuild.base_max_age_days` among the specs sharing it); rebuild each stale one once,
    as a new generation; then remove old generations nothing uses. One base failing to
    rebuild is reported in its entry and the others go on. Raises Interrupted on cancel."""
    from imgpipe.sources.generations import recipe_stem, remove_unused_bases

    now = now or datetime.now(UTC)
    fetch = fetch or PROCESS_RELEASES
    refreshes = []
    for key, (recipe, specs) in _groups(loaded_specs).items():
        if cancel.is_set():
            raise Interrupted("interrupted while refreshing the bases")
        refresh = BaseRefresh(
            key,
            recipe_stem(recipe, key),
            sorted({s.spec.name for s in specs}),
            min(s.spec.rebuild.base_max_age_days for s in specs),
        )
        _refresh_one(refresh, recipe, log, cancel, now, fetch)
        for line in refresh.warnings:
            log(line)
        log(f"base: {refresh.summary}")
        refreshes.append(refresh)
    if cancel.is_set():
        raise Interrupted("interrupted while refreshing the bases")
    removed = [a.path.name for a in remove_unused_bases(log) if a.remove]
    for refresh in refreshes:
        refresh.removed = [name for name in removed if name.startswith(refresh.stem)]
    return refreshes


def _refresh_one(
    refresh: BaseRefresh,
    recipe: BootstrapRecipe,
    log: Callable[[str], None],
    cancel: threading.Event,
    now: datetime,
    fetch: ReleaseDates,
) -> None:
    from imgpipe.sources import bootstrap
    from imgpipe.sources.generations import current_base, new_generation_path, recipe_lock

    base = current_base(recipe, refresh.recipe)
    if base is None:
        refresh.state = RefreshState.ABSENT
        return
    refresh.base, refresh.built = base.name, _show(built_at(base))
    stale = base_staleness(base, refresh.max_age_days, now, fetch=fetch, warn=refresh.warnings.append)
    if stale is None:
        return
    refresh.stale = str(stale)
    log(f"base {base.name}: stale ({stale}); rebuilding it as a new file")
    with recipe_lock(recipe, refresh.recipe):
        latest = current_base(recipe, refresh.recipe)
        if (
            latest is not None
            and latest != base  # another runner rebuilt it meanwhile
            and base_staleness(latest, refresh.max_age_days, now, fetch=fetch) is None
        ):
            refresh.state, refresh.new_base = RefreshState.REBUILT_ELSEWHERE, latest.name
            return
        dest = new_generation_path(recipe, refresh.recipe)
        workdir = dest.parent / f".work-{refresh.recipe[:16]}-{os.getpid()}"
        try:
            bootstrap.build_base_image(recipe, dest, workdir, log, cancel)
        except Exception as exc:  # noqa: BLE001 - one base's failure is reported, the rest go on
            err = as_imgpipe_error(exc)
            if isinstance(err, Interrupted):
                raise
            refresh.state, refresh.error = RefreshState.FAILED, str(err)
            return
        finally:
            bootstrap.remove_unmounted(workdir)
    refresh.state, refresh.new_base = RefreshState.REBUILT, dest.name
