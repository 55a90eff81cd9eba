"""Look inside a captured image without booting it: qemu-img to raw, the root
partition found with sfdisk, files read with debugfs at the partition's offset (no
mount, no loop device). What a seal left behind is visible here, whatever first boot
would do to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


class ImageFiles:
    def __init__(self, image: Path, workdir: Path) -> None:
        self.raw = workdir / f"{image.stem}.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(self.raw)], check=True)
        table = json.loads(
            subprocess.run(["sfdisk", "-J", str(self.raw)], capture_output=True, check=True).stdout
        )
        root = max(table["partitiontable"]["partitions"], key=lambda p: p["size"])
        self.device = f"{self.raw}?offset={root['start'] * 512}"

    def _debugfs(self, request: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["debugfs", "-R", request, self.device], capture_output=True, check=True)

    def read(self, path: str) -> bytes | None:
        """A file's content, or None if it does not exist."""
        out = self._debugfs(f"cat {path}")
        return None if b"File not found" in out.stderr else out.stdout

    def listdir(self, path: str) -> list[str] | None:
        """Names in a directory (without . and ..), or None if it does not exist."""
        out = self._debugfs(f"ls -p {path}")
        if b"File not found" in out.stderr:
            return None
        names = [line.split("/")[5] for line in out.stdout.decode().splitlines() if line.count("/") >= 6]
        return [n for n in names if n not in (".", "..")]

    def dump(self, path: str, dest: Path) -> Path:
        """Copy a directory out of the image (debugfs rdump); returns the local copy."""
        dest.mkdir(parents=True, exist_ok=True)
        self._debugfs(f"rdump {path} {dest}")
        return dest / Path(path).name

    def close(self) -> None:
        self.raw.unlink(missing_ok=True)
