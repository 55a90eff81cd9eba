"""Build ids: sortable, and they say when the build started (gc ages builds by them)."""

from __future__ import annotations

import calendar
import secrets
import time

_FORMAT = "%Y%m%dT%H%M%SZ"


def new_build_id() -> str:
    return time.strftime(_FORMAT, time.gmtime()) + "-" + secrets.token_hex(3)


def build_started(build_id: str) -> float | None:
    """Seconds since the epoch from `20261127T053122Z-dc0ed0`; None if not an imgpipe id."""
    try:
        return float(calendar.timegm(time.strptime(build_id.split("-", 1)[0], _FORMAT)))
    except ValueError:
        return None
