"""Each error class names file:line:column, the field path, and what was found."""

import subprocess

import pytest

from imgpipe.errors import SpecError
from imgpipe.spec import load_spec
from tests.conftest import IMGPIPE, REPO, write

GOOD = """\
imgpipe: 1
name: web
targets:
  local: {builder: libvirt}
"""


def problems(tmp_path, text):
    spec = write(tmp_path / "spec.yml", text)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.exit_code == 2
    return str(info.value), str(spec)


def test_example_spec_loads():
    loaded = load_spec(REPO / "examples" / "web.yml")
    assert loaded.spec.name == "web"
    assert loaded.targets["local"].memory_mb == 1024


def test_unknown_key_names_line_and_suggests(tmp_path):
    msg, f = problems(tmp_path, GOOD + "provison: {}\n")
    assert f"{f}:5:1: provison: unknown field (did you mean 'provision'?)" in msg


def test_nested_unknown_key_in_role_ref(tmp_path):
    msg, f = problems(tmp_path, GOOD + "provision:\n  roles:\n    - {role: a, varz: {}}\n")
    assert f"{f}:7:17: provision.roles[0].varz: unknown field (did you mean 'vars'?)" in msg
    assert "Input should be a valid string" not in msg  # the str member of the union is noise


def test_wrong_type_shows_found_value(tmp_path):
    msg, f = problems(tmp_path, GOOD.replace("{builder: libvirt}", "{builder: libvirt, cpus: many}"))
    assert f"{f}:4:35: targets.local.cpus:" in msg and "found 'many'" in msg


def test_unknown_builder_suggests(tmp_path):
    msg, f = problems(tmp_path, GOOD.replace("libvirt}", "libvrt}"))
    assert f"{f}:4:20: targets.local.builder: unknown builder 'libvrt' (did you mean 'libvirt'?)" in msg


def test_missing_required_field(tmp_path):
    msg, f = problems(tmp_path, "imgpipe: 1\ntargets:\n  local: {builder: libvirt}\n")
    assert f"{f}:1:1: name: Field required" in msg


def test_yaml_syntax_error_position(tmp_path):
    msg, f = problems(tmp_path, "name: web\ntargets: [\n")
    assert msg.startswith(f"{f}:3:1: YAML syntax error")


def test_duplicate_key(tmp_path):
    msg, f = problems(tmp_path, GOOD + "name: again\n")
    assert f"{f}:5:1: YAML syntax error: duplicate key 'name'" in msg


def test_all_problems_reported_together(tmp_path):
    msg, _ = problems(tmp_path, "imgpipe: 1\nname: Bad!\nsorce: {}\ntargets: {}\n")
    assert "3 problems" in msg


def test_cli_exit_code_and_no_traceback(tmp_path):
    spec = write(tmp_path / "bad.yml", GOOD + "seal: {skip: [mahcine_id]}\n")
    proc = subprocess.run([*IMGPIPE, "validate", str(spec)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{spec}:5:15: seal.skip[0]:" in proc.stderr


def test_validate_reports_missing_role_with_line(tmp_path):
    spec = write(tmp_path / "spec.yml", GOOD + "provision:\n  roles: [nginx, no_such_role]\n")
    proc = subprocess.run([*IMGPIPE, "validate", str(spec)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert f"{spec}:6:18: provision.roles[1]: role 'no_such_role' not found" in proc.stderr


AWS = """\
imgpipe: 1
name: web
targets:
  ec2:
    builder: aws
    source_ami: ami-0123456789abcdef0
"""


def test_aws_target_needs_exactly_one_source(tmp_path):
    msg, f = problems(tmp_path, AWS.replace("    source_ami: ami-0123456789abcdef0\n", ""))
    assert f"{f}:5:5: targets.ec2: " in msg and "set exactly one of source_ami and source_ami_filter" in msg
    both = AWS + "    source_ami_filter: {owners: [amazon], name: debian-12-*}\n"
    assert "set exactly one" in problems(tmp_path, both)[0]


def test_aws_ami_name_template_fields_and_cidrs_are_checked(tmp_path):
    msg, f = problems(tmp_path, AWS + "    ami_name: '{spec}-{when}'\n    ssh_cidrs: [10.0.0.0/33]\n")
    assert f"{f}:7:15: targets.ec2.ami_name:" in msg and "unknown field(s) ['when']" in msg
    assert f"{f}:8:16: targets.ec2.ssh_cidrs:" in msg and "10.0.0.0/33" in msg


def test_aws_import_from_an_aws_target_is_refused(tmp_path):
    text = AWS + "publish:\n  ami: {publisher: aws-import, from: ec2, import: {bucket: b}}\n"
    msg, f = problems(tmp_path, text)
    assert f"{f}:8:38: publish.ami.from: target 'ec2' builds with 'aws'" in msg


AWS_PUBLISH = AWS + "    publish: {copy_to: [eu-west-1], tags: {team: web}}\n    aws: {profile: ci}\n"


def test_a_targets_publish_settings_are_an_ami_publisher_that_runs_first(tmp_path):
    text = AWS_PUBLISH + "publish:\n  dr: {publisher: ami, from: ec2, copy_to: [us-west-2]}\n"
    loaded = load_spec(write(tmp_path / "spec.yml", text))
    shorthand, dr = loaded.steps_for("ec2")
    assert (shorthand.name, shorthand.publisher, shorthand.source, shorthand.refines) == (
        "ec2.publish",
        "ami",
        "ec2",
        True,
    )
    assert shorthand.settings.copy_to == ["eu-west-1"] and shorthand.settings.tags == {"team": "web"}
    assert shorthand.settings.aws.profile == "ci"  # the same AWS identity as the build
    assert (dr.name, dr.source, dr.refines, dr.settings.copy_to) == ("dr", "ec2", False, ["us-west-2"])


def test_publishers_chain_from_the_artifact_another_publisher_made(tmp_path):
    text = GOOD + (
        "publish:\n"
        "  copies: {publisher: ami, from: imported, copy_to: [eu-west-1]}\n"
        "  imported: {publisher: aws-import, from: local, import: {bucket: b}}\n"
    )
    steps = load_spec(write(tmp_path / "spec.yml", text)).steps_for("local")
    assert [(s.name, s.source) for s in steps] == [
        ("imported", "local"),
        ("imported.publish", "imported"),
        ("copies", "imported"),
    ]


def test_publish_from_problems_are_located(tmp_path):
    text = GOOD + (
        "publish:\n"
        "  a: {publisher: ami, from: b}\n"
        "  b: {publisher: ami, from: a}\n"
        "  c: {publisher: aws-import, from: nowhere, import: {bucket: x}}\n"
        "  d: {publisher: aws-import, from: e, import: {bucket: x}}\n"
        "  e: {publisher: aws-import, from: local, import: {bucket: x}}\n"
    )
    msg, f = problems(tmp_path, text)
    assert f"{f}:6:29: publish.a.from: a cycle: a -> b -> a" in msg
    assert f"{f}:8:36: publish.c.from: no target or publish entry 'nowhere'" in msg
    assert (
        f"{f}:9:36: publish.d.from: publish entry 'e' (aws-import) makes an artifact of kind 'ami'; "
        "publisher 'aws-import' takes 'image-file'"
    ) in msg


def test_image_tests_a_spec_names_must_exist(tmp_path):
    write(tmp_path / "tests" / "test_ok.py", "def test_ok(host):\n    pass\n")
    text = GOOD + "verify:\n  testinfra: [tests/test_ok.py, tests/missing.py]\n  playbooks: [gone.yml]\n"
    msg, f = problems(tmp_path, text)
    assert f"{f}:6:33: verify.testinfra[1]: no such file 'tests/missing.py'" in msg
    assert f"{f}:7:15: verify.playbooks[0]: no such file 'gone.yml'" in msg
    assert "test_ok" not in msg
