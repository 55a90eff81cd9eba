"""Images built on images, for real: the session's web image (examples/web.yml, nginx) is
promoted to `stable`, a child spec with `source: {parent: web@stable}` adds a small role on
top, and the child, booted on its own in plain qemu, serves nginx's page (the parent's
layer) and the file its own role wrote (the child's layer). The catalog records the
parent; `imgpipe show` prints the chain; `imgpipe status` says the child is up to date;
`imgpipe diff` parent child lists exactly the package the child's role added (this bake
is also the suite's test of diff on real images)."""

import json
import urllib.request

from tests.conftest import write
from tests.integration.conftest import build_dir_from, run_imgpipe
from tests.integration.vmboot import BootedImage

CHILD = """\
imgpipe: 1
name: webchild
description: The web image plus one file
source: {{parent: web@stable}}
provision:
  roles: [child_marker]
  roles_path: [{roles}]
verify: {{enabled: false}}  # booted by this test instead
targets:
  local: {{builder: libvirt, memory_mb: 1024, cpus: 2, disk_gb: 8}}
"""
MARKER_ROLE = """\
- name: A package only the child has
  # the parent image carries no apt lists (its seal leaves none): fetch them, as a team would
  ansible.builtin.apt: {name: tree, install_recommends: false, update_cache: true}
- name: A file only the child has, served by the parent's nginx
  ansible.builtin.copy:
    content: "child layer\\n"
    dest: /var/www/html/child.txt
    mode: "0644"
"""


def test_a_child_of_web_stable_carries_both_layers(web_build, tmp_path):
    env, catalog, parent_id = web_build["env"], web_build["catalog"], web_build["dir"].name
    promoted = run_imgpipe(env, "promote", "web", parent_id, "--channel", "stable", catalog_url=catalog)
    assert promoted.returncode == 0, promoted.stderr

    write(tmp_path / "roles" / "child_marker" / "tasks" / "main.yml", MARKER_ROLE)
    child = write(tmp_path / "child.yml", CHILD.format(roles=tmp_path / "roles"))
    baked = run_imgpipe(env, "bake", str(child), "--output", str(tmp_path / "out"), catalog_url=catalog)
    assert baked.returncode == 0, f"bake failed:\n{baked.stdout}\n{baked.stderr[-4000:]}"
    build = build_dir_from(baked.stdout)
    record = json.loads((build / "manifest.json").read_text())["imgpipe"]["targets"]["local"]
    parent_file = web_build["dir"] / "web-local.qcow2"
    assert record["source"]["kind"] == "image" and record["source"]["path"] == str(parent_file)
    assert record["source"]["parent"]["ref"] == "web@stable"
    assert record["source"]["parent"]["build_id"] == parent_id
    assert record["source"]["parent"]["target"] == "local"

    shown = run_imgpipe(env, "show", build.name, catalog_url=catalog)
    assert shown.returncode == 0, shown.stderr
    assert f"parent      web@stable = build {parent_id} target local" in shown.stdout, shown.stdout
    doc = json.loads(run_imgpipe(env, "show", build.name, "--json", catalog_url=catalog).stdout)
    (link,) = doc["build"]["targets"]["local"]["parents"]
    assert link == {
        "ref": "web@stable",
        "build_id": parent_id,
        "target": "local",
        "spec": "web",
        "status": "succeeded",
    }
    text = run_imgpipe(env, "diff", str(web_build["dir"]), str(build), catalog_url=catalog)
    assert text.returncode == 0, text.stderr
    added = [line for line in text.stdout.splitlines() if line.startswith("  + ")]
    assert [line.split()[1] for line in added] == ["tree"], text.stdout
    assert "inputs: spec" in text.stdout  # another spec file
    as_json = json.loads(
        run_imgpipe(env, "diff", str(web_build["dir"]), str(build), "--json", catalog_url=catalog).stdout
    )
    assert [p["name"] for p in as_json["targets"]["local"]["added"]] == ["tree"]
    assert as_json["targets"]["local"]["removed"] == [] and as_json["targets"]["local"]["upgraded"] == []

    status = run_imgpipe(env, "status", str(child), catalog_url=catalog)
    assert status.stdout.strip() == f"local: up to date with build {build.name}", (
        status.stdout + status.stderr
    )

    vm = BootedImage(build / "webchild-local.qcow2", tmp_path)
    try:
        page = vm.http_get(timeout=600)  # the parent's nginx and page
        with urllib.request.urlopen(f"http://127.0.0.1:{vm.http_port}/child.txt", timeout=10) as r:
            marker = r.read().decode()  # the child's file
    finally:
        vm.close()
    assert "Hello from imgpipe" in page and parent_id in page
    assert marker == "child layer\n"
