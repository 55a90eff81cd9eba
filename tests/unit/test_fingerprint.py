"""The input fingerprint: each kind of input, changed alone, changes the digest and is named
by explain(); what is not an input (mtimes, where roles or images live) changes nothing.
Rosco's bake keys missed inputs and served stale images: one test per input kind."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

import imgpipe
import imgpipe.fingerprint as fingerprint_module
from imgpipe.fingerprint import (
    explain,
    publish_fingerprint,
    source_identity,
    target_fingerprint,
    with_installed,
)
from imgpipe.rolefiles import role_closure
from imgpipe.shipped import shipped_dir
from imgpipe.sources.bootstrap import recipe_key
from imgpipe.sources.identity import bootstrap_recipe, cached_base_path
from imgpipe.spec.load import load_spec
from tests.conftest import write

KEY = b"catalog key"

SPEC: dict = {
    "imgpipe": 1,
    "name": "web",
    "description": "not an input",
    "variables": {
        "site_title": {"type": "string", "default": "Hello"},
        "db_password": {"type": "string", "sensitive": True, "default": "hunter2"},
    },
    "source": {"bootstrap": {"distro": "debian", "suite": "bookworm"}},
    "provision": {"roles_path": ["team-roles"], "roles": ["web"], "playbooks": ["site.yml"]},
    "targets": {"local": {"builder": "libvirt", "memory_mb": 1024}},
}

ROLE_FILES = {
    "web/meta/main.yml": "dependencies:\n  - role: common\n",
    "web/tasks/main.yml": (
        "- name: extra bits\n  ansible.builtin.include_role:\n    name: extra\n"
        "- name: chosen at run time\n  ansible.builtin.include_role:\n    name: '{{ flavour }}'\n"
    ),
    "web/files/run.sh": "#!/bin/sh\necho hi\n",
    "common/tasks/main.yml": "- ansible.builtin.debug: {msg: common}\n",
    "extra/tasks/main.yml": "- ansible.builtin.debug: {msg: extra}\n",
    "unused/tasks/main.yml": "- ansible.builtin.debug: {msg: never run}\n",
}
PLAYBOOK = "- hosts: all\n  tasks:\n    - ansible.builtin.debug: {msg: site}\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A spec dir with roles (a meta dependency, an include_role), a playbook and a cached base."""
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    for name in list(os.environ):
        if name.startswith("IMGPIPE_VAR_"):
            monkeypatch.delenv(name)
    here = tmp_path / "project"
    for rel, text in ROLE_FILES.items():
        write(here / "team-roles" / rel, text)
    write(here / "site.yml", PLAYBOOK)
    write_spec(here, SPEC)
    loaded = load_spec(here / "spec.yml")
    recipe = bootstrap_recipe(loaded)
    write(cached_base_path(recipe, recipe_key(recipe)), "base image bytes")
    return here


def write_spec(here: Path, spec: dict) -> None:
    write(here / "spec.yml", yaml.safe_dump(spec, sort_keys=False))


def edit_spec(here: Path, change) -> None:
    spec = yaml.safe_load((here / "spec.yml").read_text())
    change(spec)
    write_spec(here, spec)


def fingerprint(here: Path, target: str = "local", *, key: bytes = KEY, cli_vars=None, resolve_ami=None):
    loaded = load_spec(here / "spec.yml", cli_vars=cli_vars)
    source = source_identity(loaded, target, resolve_ami=resolve_ami)
    return target_fingerprint(loaded, target, hmac_key=key, source=source)


def changed(before, after) -> list[str]:
    assert before.digest != after.digest
    lines = explain(before.parts, after.parts)
    assert lines, "a changed digest must be explained"
    return lines


def test_role_task_file(project):
    before = fingerprint(project)
    (project / "team-roles/web/tasks/main.yml").write_text(ROLE_FILES["web/tasks/main.yml"] + "# more\n")
    assert changed(before, fingerprint(project)) == ["role web: tasks/main.yml changed"]


def test_role_file_mode(project):
    before = fingerprint(project)
    (project / "team-roles/web/files/run.sh").chmod(0o755)
    assert changed(before, fingerprint(project)) == ["role web: files/run.sh mode changed (now executable)"]


def test_file_added_to_role(project):
    before = fingerprint(project)
    write(project / "team-roles/web/templates/motd.j2", "hello\n")
    assert changed(before, fingerprint(project)) == ["role web: templates/motd.j2 added"]


def test_meta_dependency_file(project):
    before = fingerprint(project)
    write(project / "team-roles/common/defaults/main.yml", "x: 1\n")
    assert changed(before, fingerprint(project)) == ["role common: defaults/main.yml added"]


def test_included_role_file(project):
    before = fingerprint(project)
    write(project / "team-roles/extra/tasks/main.yml", "- ansible.builtin.debug: {msg: changed}\n")
    assert changed(before, fingerprint(project)) == ["role extra: tasks/main.yml changed"]


def test_roles_outside_the_closure_do_not_count_and_templated_includes_are_recorded(project):
    fp = fingerprint(project)
    assert set(fp.parts["roles"]) == {"web", "common", "extra"}
    assert fp.parts["dynamic_includes"] == ["role web: tasks/main.yml: role {{ flavour }}"]
    write(project / "team-roles/unused/tasks/main.yml", "- ansible.builtin.debug: {msg: edited}\n")
    assert fingerprint(project).digest == fp.digest


def test_closure_reads_ansible_forms(tmp_path):
    write(
        tmp_path / "r/a/tasks/main.yml",
        "- include_role: name=b tasks_from=x\n"
        "- block:\n    - ansible.builtin.import_role: {name: c}\n"
        "  vars:\n    secret: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n",
    )
    write(tmp_path / "r/b/tasks/x.yml", "- ansible.builtin.debug: {msg: !unsafe '{{ x }}'}\n")
    write(tmp_path / "r/c/meta/main.yml", "dependencies: [d]\n")
    write(tmp_path / "r/d/tasks/main.yml", "- ansible.builtin.debug: {}\n")
    write(tmp_path / "pb.yml", "- import_playbook: other.yml\n")
    write(tmp_path / "other.yml", "- hosts: all\n  tasks:\n    - include_tasks: t.yml\n")
    write(tmp_path / "t.yml", "- include_role: {name: '{{ z }}'}\n")
    closure = role_closure(["a"], [tmp_path / "pb.yml"], [tmp_path / "r"], tmp_path)
    assert list(closure.roles) == ["a", "b", "c", "d"]
    assert list(closure.playbooks) == ["pb.yml", "other.yml"] and list(closure.playbook_files) == ["t.yml"]
    assert closure.dynamic == ["playbook file t.yml: role {{ z }}"]


def test_playbook(project):
    before = fingerprint(project)
    write(project / "site.yml", PLAYBOOK + "    - ansible.builtin.debug: {msg: more}\n")
    assert changed(before, fingerprint(project)) == ["playbook site.yml changed"]


def test_playbook_roles_templates_and_vars_files_join(project):
    write(project / "site.yml", "- hosts: all\n  vars_files: [vars/site.yml]\n  roles: [pbrole]\n")
    write(project / "roles/pbrole/tasks/main.yml", "- ansible.builtin.debug: {msg: pb}\n")
    write(project / "vars/site.yml", "admin_password: letmein\n")
    write(project / "templates/page.j2", "page\n")
    before = fingerprint(project)
    assert "pbrole" in before.parts["roles"]
    write(project / "templates/page.j2", "new page\n")
    write(project / "vars/site.yml", "admin_password: letmein2\n")
    after = fingerprint(project)
    assert changed(before, after) == [
        "playbook file templates/page.j2 changed",
        "playbook vars file vars/site.yml changed",
    ]
    text = json.dumps(after.parts)
    assert "letmein" not in text and hashlib.sha256(b"admin_password: letmein2\n").hexdigest() not in text


def test_variable(project):
    before = fingerprint(project)
    after = fingerprint(project, cli_vars=["site_title=Goodbye"])
    assert changed(before, after) == ["variable site_title: changed"]


def test_sensitive_variable_changes_without_leaving_a_value_or_plain_hash(project):
    before = fingerprint(project, cli_vars=["db_password=hunter2"])
    after = fingerprint(project, cli_vars=["db_password=tr0ub4dor"])
    assert changed(before, after) == ["variable db_password: changed (sensitive)"]
    for fp, value in ((before, "hunter2"), (after, "tr0ub4dor")):
        text = json.dumps(fp.parts)
        forbidden = [value, hashlib.sha256(value.encode()).hexdigest()]
        forbidden.append(hashlib.sha256(json.dumps(value).encode()).hexdigest())
        assert not [f for f in forbidden if f in text]
        assert fp.parts["variables"]["db_password"].startswith("hmac:")


def test_hmac_key(project):
    a, b = fingerprint(project, key=b"one"), fingerprint(project, key=b"one")
    assert a.digest == b.digest
    other = fingerprint(project, key=b"two")
    assert other.digest != a.digest
    assert other.parts["variables"]["db_password"] != a.parts["variables"]["db_password"]
    assert other.parts["variables"]["site_title"] == a.parts["variables"]["site_title"]


def test_target_setting(project):
    before = fingerprint(project)
    edit_spec(project, lambda s: s["targets"]["local"].update(memory_mb=2048))
    assert changed(before, fingerprint(project)) == ["target setting memory_mb: 1024 -> 2048"]


def test_bootstrap_recipe(project):
    before = fingerprint(project)
    edit_spec(project, lambda s: s["source"]["bootstrap"].update(packages=["curl"]))
    assert changed(before, fingerprint(project)) == ['bootstrap recipe changed (packages: [] -> ["curl"])']


def test_base_identity(project):
    before = fingerprint(project)
    loaded = load_spec(project / "spec.yml")
    recipe = bootstrap_recipe(loaded)
    cached_base_path(recipe, recipe_key(recipe)).write_text("a base bootstrapped again")
    lines = changed(before, fingerprint(project))
    assert len(lines) == 1 and lines[0].startswith("source base rebuilt 2")


def test_base_identity_from_its_sidecar_is_the_same_on_every_host(project):
    loaded = load_spec(project / "spec.yml")
    recipe = bootstrap_recipe(loaded)
    key = recipe_key(recipe)
    base = cached_base_path(recipe, key)
    sidecar = {"recipe": key, "built": "2026-11-27", "built_from": {"packages": {"nginx": "1.22"}}}
    write(base.with_suffix(".json"), json.dumps(sidecar))
    here = source_identity(loaded, "local")
    base.write_text("the same recipe and packages, bootstrapped on another host")
    there = source_identity(loaded, "local")
    assert here.identity == there.identity and here.identity["base"].startswith("built-from:")
    assert "/" not in json.dumps(here.identity)
    sidecar["built_from"] = {"packages": {"nginx": "1.22-2"}}
    write(base.with_suffix(".json"), json.dumps(sidecar))
    assert source_identity(loaded, "local").identity != here.identity


def test_no_cached_base_yet(project, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "empty-cache"))
    source = source_identity(load_spec(project / "spec.yml"), "local")
    assert source.identity["base"] is None


def test_image_file_content(project):
    write(project / "base.img", "image one")
    edit_spec(project, lambda s: s.update(source={"image": {"path": "base.img"}}))
    before = fingerprint(project)
    write(project / "base.img", "image two")
    lines = changed(before, fingerprint(project))
    assert len(lines) == 1 and lines[0].startswith("source image: content changed (sha256 ")


def test_url_checksum(project):
    image = {"url": "https://example.org/a.qcow2", "checksum": "sha256:" + "a" * 64}
    edit_spec(project, lambda s: s.update(source={"image": image}))
    before = fingerprint(project)
    edit_spec(project, lambda s: s["source"]["image"].update(checksum="sha256:" + "b" * 64))
    lines = changed(before, fingerprint(project))
    assert lines == [f"source image checksum: sha256:{'a' * 64} -> sha256:{'b' * 64}"]


def test_image_file_digest_is_cached(project, monkeypatch):
    write(project / "base.img", "image one")
    edit_spec(project, lambda s: s.update(source={"image": {"path": "base.img"}}))
    loaded = load_spec(project / "spec.yml")
    first = source_identity(loaded, "local")
    monkeypatch.setattr(hashlib, "file_digest", lambda *a, **k: pytest.fail("hashed again"))
    assert source_identity(loaded, "local") == first


def ec2_spec(here: Path, **settings) -> None:
    target = {
        "builder": "aws",
        "source_ami_filter": {"owners": ["amazon"], "name": "debian-12-*"},
        **settings,
    }
    edit_spec(here, lambda s: s.update(targets={"ec2": target}))


def test_ami_filter_resolving_to_another_id(project):
    ec2_spec(project)
    before = fingerprint(project, "ec2", resolve_ami=lambda settings: "ami-0000000000000000a")
    after = fingerprint(project, "ec2", resolve_ami=lambda settings: "ami-0000000000000000b")
    assert changed(before, after) == [
        "source AMI filter now resolves to ami-0000000000000000b (was ami-0000000000000000a)"
    ]


def test_imgpipe_and_ansible_versions(project, monkeypatch):
    import ansible.release

    before = fingerprint(project)
    with monkeypatch.context() as patch:
        patch.setattr(imgpipe, "__version__", "9.9.9")
        assert changed(before, fingerprint(project)) == [f"imgpipe {before.parts['imgpipe']} -> 9.9.9"]
    monkeypatch.setattr(ansible.release, "__version__", "2.99.0")
    assert changed(before, fingerprint(project)) == [f"ansible-core {before.parts['ansible_core']} -> 2.99.0"]


def test_seal_role(project, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    for name in ("roles", "playbooks"):
        shutil.copytree(shipped_dir(name), shipped / name)
    monkeypatch.setattr(fingerprint_module, "shipped_dir", lambda name: shipped / name)
    before = fingerprint(project)
    with open(shipped / "roles/imgpipe_seal/files/seal.sh", "a") as fh:
        fh.write("# one more step\n")
    assert changed(before, fingerprint(project)) == ["seal role changed"]


def test_mtimes_droppings_and_locations_are_not_inputs(project, tmp_path):
    write(project / "base.img", "image one")
    edit_spec(project, lambda s: s.update(source={"image": {"path": "base.img"}}))
    before = fingerprint(project)
    for path in [*project.rglob("*"), project / "base.img"]:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    write(project / "team-roles/web/.git/HEAD", "ref: refs/heads/main\n")
    write(project / "team-roles/web/tasks/.main.yml.swp", "vim")
    write(project / "team-roles/web/tasks/main.yml~", "backup")
    write(project / "team-roles/web/tasks/main.yml.orig", "merge leftover")
    write(project / "team-roles/web/__pycache__/x.cpython-311.pyc", "bytecode")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(project / "team-roles", elsewhere / "roles-moved")
    shutil.move(project / "base.img", elsewhere / "base-moved.img")
    edit_spec(
        project,
        lambda s: s.update(
            source={"image": {"path": str(elsewhere / "base-moved.img")}},
            provision={**s["provision"], "roles_path": [str(elsewhere / "roles-moved")]},
        ),
    )
    after = fingerprint(project)
    assert explain(before.parts, after.parts) == []
    assert after.digest == before.digest


def test_spec_path_and_description_are_not_inputs(project, tmp_path):
    before = fingerprint(project)
    edit_spec(project, lambda s: s.update(description="something else"))
    shutil.copy(project / "spec.yml", project / "renamed.yml")
    loaded = load_spec(project / "renamed.yml")
    after = target_fingerprint(loaded, "local", hmac_key=KEY, source=source_identity(loaded, "local"))
    assert after.digest == before.digest


def test_publish_settings_change_only_the_publish_fingerprint(project):
    ec2_spec(project, publish={"tags": {"team": "web"}})
    resolve = lambda settings: "ami-0000000000000000a"  # noqa: E731
    before = fingerprint(project, "ec2", resolve_ami=resolve)
    publish_before = publish_fingerprint(load_spec(project / "spec.yml"), "ec2")
    ec2_spec(project, publish={"tags": {"team": "web"}, "copy_to": ["eu-west-1"]})
    after = fingerprint(project, "ec2", resolve_ami=resolve)
    assert after.digest == before.digest
    assert publish_fingerprint(load_spec(project / "spec.yml"), "ec2") != publish_before


def test_with_installed_versions(project):
    fp = fingerprint(project)
    a = with_installed(fp, {"community.general": "8.0.0"})
    b = with_installed(fp, {"community.general": "8.1.0"})
    assert changed(a, b) == ["requirements: community.general 8.0.0 -> 8.1.0"]


def test_explain_is_never_silent_about_an_unknown_part():
    assert explain({"future": 1}, {"future": 2}) == ["future changed"]
    assert explain({"info": {"base_built": "x"}}, {"info": {}}) == []


def test_what_the_requirements_file_installs_is_an_input(project):
    """Its offline sources: a local role directory by content, a git repository by the
    commit its `version` names. Changing either, with the file untouched, is a change."""
    import subprocess

    write(project / "vendor" / "local_role" / "tasks" / "main.yml", "- ansible.builtin.debug: {msg: one}\n")
    repo = project / "vendor" / "git_role"
    write(repo / "tasks" / "main.yml", "- ansible.builtin.debug: {msg: a}\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    write(
        project / "requirements.yml",
        "roles:\n  - {src: vendor/local_role, name: local_role}\n"
        "  - {src: git+file://" + str(repo) + ", version: HEAD, name: git_role}\n"
        "  - {src: community.general, version: 8.0.0}\n",
    )
    write_spec(project, {**SPEC, "provision": {**SPEC["provision"], "requirements": "requirements.yml"}})
    before = fingerprint(project)
    assert before.parts["installed"]["community.general"] == "8.0.0"

    write(project / "vendor" / "local_role" / "tasks" / "main.yml", "- ansible.builtin.debug: {msg: two}\n")
    after_local = fingerprint(project)
    assert [line.split(" ")[:2] for line in changed(before, after_local)] == [
        ["requirements:", "vendor/local_role"]
    ]

    write(repo / "tasks" / "main.yml", "- ansible.builtin.debug: {msg: b}\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    after_git = fingerprint(project)
    (line,) = changed(after_local, after_git)
    assert line.startswith(f"requirements: git+file://{repo} git:") and "-> git:" in line


def test_the_specs_ansible_cfg_is_an_input_and_verbosity_is_not(project):
    before = fingerprint(project)
    (project / "ansible.cfg").write_text("[defaults]\nforks = 2\n")
    with_cfg = fingerprint(project)
    assert changed(before, with_cfg) == ["the spec's ansible.cfg changed"]
    (project / "ansible.cfg").write_text("[defaults]\nforks = 3\n")
    assert changed(with_cfg, fingerprint(project)) == ["the spec's ansible.cfg changed"]
    unchanged = fingerprint(project)
    edit_spec(project, lambda spec: spec["provision"].update(ansible={"verbosity": 3}))
    assert fingerprint(project).digest == unchanged.digest
    edit_spec(project, lambda spec: spec["provision"].update(ansible={"verbosity": 3, "tags": ["web"]}))
    assert changed(unchanged, fingerprint(project)) == ["spec provision.ansible.tags: changed"]
