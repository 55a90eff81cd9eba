"""Plugins (builders, publishers) are found through entry point groups and imported
only when used, so a heavy client library loads only for the specs that need it."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    return sorted(_group(group))


def plugin_class(group: str, name: str) -> type:
    return _group(group)[name].load()  # type: ignore[no-any-return]
