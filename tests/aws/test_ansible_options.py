"""`provision.ansible` in a real bake (ansible-runner over SSH to the stand-in instance):
the spec's ansible.cfg, tags and skip-tags, a vault password from the environment (never
logged), and a playbook written for Packer (`hosts: default`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from imgpipe.spec import load_spec
from tests.aws.test_ec2_builder import ec2_bake  # noqa: F401 - the fixture
from tests.conftest import write

PASSWORD = "correct-horse-battery-staple-9f3a"
PLAYBOOK = """\
- hosts: default
  vars_files: [secret.yml]
  tasks:
    - name: what this run was given
      ansible.builtin.copy:
        content: "{{{{ ansible_config_file }}}} {{{{ secret_word }}}} {{{{ imgpipe_build.builder }}}}\\n"
        dest: "{out}/team.txt"
      tags: [web]
    - name: a slow task the team skips in CI
      ansible.builtin.copy: {{content: ran, dest: "{out}/slow.txt"}}
      tags: [web, slow]
"""


def _vault(tmp: Path) -> None:
    password = write(tmp / "pw.txt", PASSWORD)
    write(tmp / "secret.yml", "secret_word: swordfish\n")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password),
            str(tmp / "secret.yml"),
        ],
        check=True,
        capture_output=True,
    )
    password.unlink()  # the bake gets it from the environment only


def test_the_spec_ansible_options_reach_the_run(ec2_bake, monkeypatch, isolated_state):  # noqa: F811
    tmp = ec2_bake.tmp
    write(tmp / "team.yml", PLAYBOOK.format(out=tmp))
    write(tmp / "ansible.cfg", "[defaults]\nforks = 3\n")
    _vault(tmp)
    monkeypatch.setenv("TEAM_VAULT_PASS", PASSWORD)
    options = (
        "  playbooks: [team.yml]\n"
        "  ansible: {tags: [web], skip_tags: [slow], verbosity: 1, vault_password_env: TEAM_VAULT_PASS}\n"
    )
    result = ec2_bake.run(provision_extra=options)
    assert result.ok, result.errors
    config, word, builder = (tmp / "team.txt").read_text().split()
    assert (config, word) == (str((tmp / "ansible.cfg").resolve()), "swordfish")
    assert builder == "aws"  # imgpipe_build.builder: Packer's packer_builder_type
    assert not (tmp / "slow.txt").exists()  # skipped by tag
    assert not ec2_bake.marker.exists()  # the untagged role did not run under --tags web
    logs = "".join(p.read_text(errors="replace") for p in (tmp / "out").rglob("*") if p.is_file())
    assert "what this run was given" in logs and PASSWORD not in logs


def test_validate_reads_the_specs_ansible_cfg_never_the_working_directorys(tmp_path, monkeypatch):
    from imgpipe.provision import syntax_check

    spec_dir = tmp_path / "spec"
    write(spec_dir / "team.yml", "- hosts: default\n  tasks: []\n")
    path = write(
        spec_dir / "spec.yml",
        "imgpipe: 1\nname: demo\nprovision: {playbooks: [team.yml]}\ntargets:\n  local: {builder: libvirt}\n",
    )
    elsewhere = tmp_path / "cwd"
    write(elsewhere / "ansible.cfg", "this is not an ini file\n")
    monkeypatch.chdir(elsewhere)
    syntax_check(load_spec(path))  # the working directory's broken ansible.cfg is not read
    write(spec_dir / "ansible.cfg", "this is not an ini file\n")
    try:
        syntax_check(load_spec(path))
    except Exception as exc:  # the spec's own config is read, as the bake reads it
        assert "ansible.cfg" in str(exc) or "config" in str(exc).lower(), exc
    else:
        raise AssertionError("the spec's broken ansible.cfg was not read")
