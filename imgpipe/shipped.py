"""Roles and playbooks that ship with imgpipe: inside the wheel, or beside the
package in a source checkout (editable installs)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_shipped" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"imgpipe's shipped {name}/ directory is missing from the installation")
