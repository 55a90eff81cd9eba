"""Builders are plugins found through the `imgpipe.builders` entry point group.
A new builder is one new module; nothing in the pipeline names a builder."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgpipe.builders.base import Builder


@cache
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="imgpipe.builders")}


def builder_names() -> list[str]:
    return sorted(_entry_points())


def builder_class(name: str) -> type[Builder]:
    """Import a builder lazily (its heavy client library loads only when used)."""
    return _entry_points()[name].load()  # type: ignore[attr-defined,no-any-return]
