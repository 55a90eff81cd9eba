"""Style is a test: ruff over the package, tests and bench scripts."""

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "imgpipe", "tests", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_spec_field_has_a_description():
    from pydantic import BaseModel

    import imgpipe.builders.libvirt as lv
    import imgpipe.spec.model as model

    classes = [c for c in vars(model).values() if isinstance(c, type) and issubclass(c, BaseModel)]
    missing = [
        f"{c.__name__}.{name}"
        for c in [*classes, lv.LibvirtSettings]
        for name, f in c.model_fields.items()
        if not f.description
    ]
    assert missing == []
