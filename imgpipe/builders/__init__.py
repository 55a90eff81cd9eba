"""Builders are plugins found through the `imgpipe.builders` entry point group.
A new builder is one new module; nothing in the pipeline names a builder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgpipe.plugins import plugin_class, plugin_names

if TYPE_CHECKING:
    from imgpipe.builders.base import Builder

GROUP = "imgpipe.builders"


def builder_names() -> list[str]:
    return plugin_names(GROUP)


def builder_class(name: str) -> type[Builder]:
    """Import a builder lazily (its heavy client library loads only when used)."""
    return plugin_class(GROUP, name)
