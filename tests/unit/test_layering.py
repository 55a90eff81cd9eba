"""The architecture, held by a test: builders and publishers meet only in the core (so a
new builder or publisher is one module), and the core knows no cloud."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "imgpipe"


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top, in a function or under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in sorted(imports(path))
        if name.startswith(forbidden)
    ]


def test_publishers_import_no_builder_and_builders_no_publisher():
    assert violations("publish", ("imgpipe.builders",)) == []
    assert violations("builders", ("imgpipe.publish",)) == []


def test_the_core_imports_no_cloud_builder_or_publisher():
    forbidden = ("imgpipe.aws", "imgpipe.builders", "imgpipe.publish", "imgpipe.pipeline")
    assert violations("core", forbidden) == []
    # nor does anything it imports, at run time
    probe = "import json, sys, imgpipe.core; print(json.dumps(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert [m for m in json.loads(loaded) if m.startswith(forbidden)] == []


def test_the_layering_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from imgpipe.aws.errors import step\n")
    assert imports(sample) == {"imgpipe.aws.errors"}
