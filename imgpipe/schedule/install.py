"""Writing scheduler files under a root directory: every conflict is found before
anything is written, a file that differs is replaced only with --force, and the
secrets file is created (empty, mode 0600) only when absent and never replaced."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from imgpipe.errors import SpecError

ENV_FILE = PurePosixPath("/etc/imgpipe/nightly.env")
LOCK_FILE = PurePosixPath("/run/lock/imgpipe-nightly.lock")

ENV_TEMPLATE = f"""\
# {ENV_FILE}: the environment of the scheduled `imgpipe nightly` run (systemd reads it
# with EnvironmentFile=, the cron entry with `. {ENV_FILE}`). Keep it owner root, mode 0600.
# KEY=value lines; single-quote a value with shell characters ($ & ; spaces), e.g.
# IMGPIPE_CATALOG='postgresql://imgpipe@db.example/imgpipe?sslmode=require'
#IMGPIPE_CATALOG=
#AWS_ACCESS_KEY_ID=
#AWS_SECRET_ACCESS_KEY=
#AWS_DEFAULT_REGION=
"""


@dataclass(frozen=True)
class PlannedFile:
    path: PurePosixPath  # on the target system, e.g. /etc/systemd/system/imgpipe-nightly.timer
    text: str
    mode: int
    keep_existing: bool = False  # the secrets file: created when absent, never replaced


class Outcome(StrEnum):
    wrote = "wrote"
    replaced = "replaced"
    unchanged = "unchanged"
    kept = "kept"


@dataclass(frozen=True)
class Written:
    path: Path
    outcome: Outcome
    mode: int
    warning: str = ""


def nightly_argv(imgpipe: Sequence[str], directory: Path, output: Path, report: Path) -> list[str]:
    """The scheduled command: `imgpipe nightly DIR --output OUT --report FILE`, absolute paths."""
    return [*imgpipe, "nightly", str(directory), "--output", str(output), "--report", str(report)]


def env_file() -> PlannedFile:
    return PlannedFile(ENV_FILE, ENV_TEMPLATE, 0o600, keep_existing=True)


def target(root: Path, path: PurePosixPath) -> Path:
    return root / path.relative_to("/")


def install(files: Sequence[PlannedFile], root: Path, *, force: bool) -> list[Written]:
    """Write `files` under `root`; SpecError (nothing written) if one exists with other
    content and not `force`."""
    conflicts = [
        target(root, f.path) for f in files if not f.keep_existing and _differs(target(root, f.path), f.text)
    ]
    if conflicts and not force:
        listed = ", ".join(str(p) for p in conflicts)
        raise SpecError(
            f"{listed}: already exists with other content; nothing was written",
            hint="--force replaces it (compare first: --print shows what would be written)",
        )
    return [_write(target(root, f.path), f) for f in files]


def one_line(text: str) -> str:
    """`text` for a comment line: control characters shown as '?'."""
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def _differs(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") != text
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError):
        return True


def _write(path: Path, planned: PlannedFile) -> Written:
    if planned.keep_existing and path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        warning = ""
        if mode & 0o077:
            warning = f"{path} is readable by other users (mode {mode:04o}): chmod 600 {path}"
        return Written(path, Outcome.kept, mode, warning)
    existed = path.exists()
    if existed and not _differs(path, planned.text):
        os.chmod(path, planned.mode)
        return Written(path, Outcome.unchanged, planned.mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), planned.mode)  # mkstemp's 0600 until here: secrets never leak
            fh.write(planned.text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Written(path, Outcome.replaced if existed else Outcome.wrote, planned.mode)
