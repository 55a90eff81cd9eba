"""Keep sensitive variable values out of everything imgpipe writes or shows:
events, error messages, copied Ansible logs. A safety net behind no_log, not
a replacement for it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

MASK = "***"


class Redactor:
    def __init__(self, secrets: Iterable[Any]) -> None:
        texts = {v if isinstance(v, str) else json.dumps(v) for v in secrets if v not in (None, "")}
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted((t for t in texts if len(t) >= 3), key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        return value

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def __bool__(self) -> bool:
        return bool(self.secrets)
