"""Download a base image once, verify its sha256, keep it in the cache by digest."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from imgpipe.errors import BuildError, Interrupted
from imgpipe.paths import cache_dir
from imgpipe.sources import cache_lock

if TYPE_CHECKING:
    from imgpipe.events import Emitter


def fetch_verified(url: str, checksum: str, emit: Emitter, cancel: threading.Event | None = None) -> Path:
    expected = checksum.split(":", 1)[1].lower()
    dest = cache_dir() / "downloads" / f"{expected}.img"
    with cache_lock(dest):
        if dest.is_file():
            emit.message(f"reusing downloaded {url}")
            return dest
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(partial, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done, reported = 0, -1
                while chunk := resp.read(1 << 20):
                    if cancel is not None and cancel.is_set():
                        raise Interrupted(f"interrupted downloading {url}")
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    pct = done * 100 // total if total else -1
                    if pct // 10 != reported // 10:
                        reported = pct
                        emit.message(f"downloading {url}: {done >> 20} MiB" + (f" ({pct}%)" if total else ""))
            if (actual := digest.hexdigest()) != expected:
                raise BuildError(
                    f"checksum mismatch for {url}: expected sha256:{expected}, got sha256:{actual}",
                    hint="the file changed upstream or the spec's checksum is wrong",
                )
            os.replace(partial, dest)
        except (urllib.error.URLError, OSError) as exc:
            raise BuildError(f"cannot download {url}: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)
    return dest
