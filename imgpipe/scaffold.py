"""`imgpipe init`: a working starting point — a spec, one role, an image test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imgpipe.errors import SpecError
from imgpipe.sources.distros import default_suite, get_suite, suite_names
from imgpipe.spec.schema import spec_json_schema

FILES = {
    "image.yml": """\
# yaml-language-server: $schema=imgpipe.schema.json
# Bake it: imgpipe bake image.yml      Check it: imgpipe validate image.yml
imgpipe: 1
name: {name}
description: A Debian {version} image built from the roles in ./roles
variables:
  motd:
    type: string
    default: Built by imgpipe
    description: Message of the day written by the 'base' role.
source:
  # suites: {suites} (default: {suite}, the current stable release)
  bootstrap: {{distro: debian, suite: {suite}}}
provision:
  roles:
    - role: base
      vars:
        base_motd: "{{{{ motd }}}}"
verify:  # tests run on a fresh boot of the captured image, before it is published
  testinfra: [tests/test_image.py]
targets:
  local:
    builder: libvirt
    memory_mb: 1024
    cpus: 2
    disk_gb: 8
""",
    "roles/base/tasks/main.yml": """\
- name: Write the message of the day
  ansible.builtin.copy:
    content: "{{ base_motd }}\\n"
    dest: /etc/motd
    mode: "0644"
""",
    "roles/base/defaults/main.yml": "base_motd: Built by imgpipe\n",
    "tests/test_image.py": '''\
"""Image tests (pytest-testinfra): `imgpipe bake` runs them against a fresh boot of the
captured image, before it is published; a failing test fails the bake."""


def test_motd(host):
    assert "Built by imgpipe" in host.file("/etc/motd").content_string
''',
}


SCHEMA_FILE = "imgpipe.schema.json"


@dataclass(frozen=True)
class Scaffolded:
    written: list[Path]
    skipped: list[Path]  # existed already and were left exactly as they were


def scaffold(directory: Path, name: str) -> Scaffolded:
    """Write the starter files and the spec's JSON Schema, never overwriting a file. The
    starter files belong together, so one that exists stops init before it writes anything.
    The schema file may exist already (`imgpipe schema > imgpipe.schema.json`, or edited by
    hand): it is kept as it is and reported as skipped."""
    existing = [p for p in (directory / rel for rel in FILES) if p.exists() or p.is_symlink()]
    if existing:
        raise SpecError(
            f"{existing[0]}: already exists; imgpipe init never overwrites files",
            hint="choose an empty directory: imgpipe init DIR",
        )
    contents = {
        directory / rel: _spec_text(text, name) if rel == "image.yml" else text for rel, text in FILES.items()
    }
    contents[directory / SCHEMA_FILE] = json.dumps(spec_json_schema(), indent=2) + "\n"
    written: list[Path] = []
    skipped: list[Path] = []
    for path, text in contents.items():
        (written if _write_new(path, text) else skipped).append(path)
    return Scaffolded(written, skipped)


def _spec_text(template: str, name: str) -> str:
    """The starter spec on the current stable suite, naming the others it could use."""
    suite = default_suite("debian")
    return template.format(
        name=name,
        suite=suite,
        version=get_suite("debian", suite).version,
        suites=", ".join(suite_names("debian")),
    )


def _write_new(path: Path, text: str) -> bool:
    """Create `path` with `text`; False, touching nothing, if it exists (even as a dangling
    symlink): the exclusive open never replaces a file that appeared since the check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as new:
            new.write(text)
    except FileExistsError:
        return False
    return True
