"""Readable placeholders in `--help`: Typer shows an option's Python type (`<list[str]>`,
`<path>`); a user wants to see what to type (`TARGET`, `NAME=VALUE`, `FILE`)."""

from __future__ import annotations

import re
from typing import Any

# options whose value has a name of its own, wherever they appear
_NAMED = {
    "--only": "TARGET",
    "--except": "TARGET",
    "--var": "NAME=VALUE",
    "--var-file": "FILE",
    "--output": "DIR",
    "--catalog": "URL",
    "--channel": "CHANNEL",
    "--reason": "TEXT",
    "--report": "FILE",
    "--on-failure": "COMMAND",
    "--enable": "SPEC",
    "--root": "DIR",
    "--manifest": "FILE",
    "--on-error": "cleanup|abort|ask",
    "--older-than": "HOURS",
}
# else by the type Typer would show
_BY_TYPE = {"path": "PATH", "int": "N", "float": "NUMBER", "str": "TEXT"}


def name_placeholders(command: Any, ctx: Any = None) -> None:
    """Give every option of `command` and its subcommands a placeholder (a metavar),
    unless it has one or takes no value."""
    for param in getattr(command, "params", ()):
        if not getattr(param, "opts", None) or not param.opts[0].startswith("-"):
            # an argument: its name (SPEC, TARGET) says what to type; Typer would add `<path>`
            param.display_type_rich = lambda ctx: None
            continue
        if getattr(param, "is_flag", False) or getattr(param, "metavar", "") is not None:
            continue
        named = next((_NAMED[o] for o in param.opts if o in _NAMED), None)
        param.metavar = named or _placeholder(param, ctx)
    for sub in getattr(command, "commands", {}).values():
        name_placeholders(sub, ctx)


def _placeholder(param: Any, ctx: Any) -> str:
    try:
        shown = str(param.display_type(ctx))
    except Exception:  # noqa: BLE001 - a placeholder is cosmetic: keep Typer's own
        return "VALUE"
    label = re.sub(r"^list\[(.*)\]$", r"\1", shown.strip("<>")).removesuffix(" range").lower()
    if "|" in label:  # a choice: show the choices
        return label
    return _BY_TYPE.get(label, "VALUE")
