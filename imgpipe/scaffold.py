"""`imgpipe init`: a working starting point — a spec, one role, an image test."""

from __future__ import annotations

from pathlib import Path

from imgpipe.errors import SpecError

FILES = {
    "image.yml": """\
# yaml-language-server: $schema=imgpipe.schema.json
# Bake it: imgpipe bake image.yml      Check it: imgpipe validate image.yml
imgpipe: 1
name: {name}
description: A Debian 12 image built from the roles in ./roles
variables:
  motd:
    type: string
    default: Built by imgpipe
    description: Message of the day written by the 'base' role.
source:
  bootstrap: {{distro: debian, suite: bookworm}}
provision:
  roles:
    - role: base
      vars:
        base_motd: "{{{{ motd }}}}"
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
"""Image test: run against a VM booted from the baked image, e.g. with testinfra:
    py.test --hosts=ssh://root@127.0.0.1:2222 tests/test_image.py"""


def test_motd(host):
    assert "Built by imgpipe" in host.file("/etc/motd").content_string
''',
}


def scaffold(directory: Path, name: str) -> list[Path]:
    """Write the starter files; refuse to overwrite anything that exists."""
    targets = [directory / rel for rel in FILES]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise SpecError(
            f"{existing[0]}: already exists; imgpipe init never overwrites files",
            hint="choose an empty directory: imgpipe init DIR",
        )
    for rel, text in FILES.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=name) if rel == "image.yml" else text)
    import json

    from imgpipe.spec.schema import spec_json_schema

    schema = directory / "imgpipe.schema.json"
    schema.write_text(json.dumps(spec_json_schema(), indent=2) + "\n")
    return [*targets, schema]
