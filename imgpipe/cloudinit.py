"""NoCloud seed ISO for the build VM.

cloud-init's NoCloud datasource reads `meta-data` and `user-data` from any filesystem
labelled `cidata`; an ISO9660 image attached as a CD-ROM is the most portable carrier.
Written with pycdlib so no external binary (genisoimage, xorriso) is needed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pycdlib
import yaml


def write_nocloud_seed(
    path: Path, *, instance_id: str, hostname: str | None, user_data: dict[str, Any]
) -> None:
    """Write a `cidata` ISO (Joliet + Rock Ridge) with meta-data and user-data.

    The file is created with mode 0600 because user-data may hold a private host key.
    """
    # Without a local-hostname, cloud-init keeps the image's own hostname (what a test boot checks).
    meta_data = {"instance-id": instance_id, **({"local-hostname": hostname} if hostname else {})}
    meta = yaml.safe_dump(meta_data).encode()
    user = ("#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False)).encode()
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    try:
        for name, data in (("meta-data", meta), ("user-data", user)):
            iso_name = "/" + name.upper().replace("-", "_") + ".;1"
            iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
    finally:
        iso.close()
