"""inspect, schema, init, target selection and the --json envelope."""

import json
import subprocess

import pytest

from imgpipe.errors import SpecError
from imgpipe.events import Event
from imgpipe.report import JsonReporter
from tests.conftest import IMGPIPE, REPO, write


def imgpipe(*args, env=None):
    return subprocess.run([*IMGPIPE, *args], cwd=REPO, capture_output=True, text=True, env=env)


def test_init_scaffold_validates_and_refuses_to_overwrite(tmp_path):
    out = imgpipe("init", str(tmp_path / "proj"), "--name", "demo")
    assert out.returncode == 0, out.stderr
    spec = tmp_path / "proj" / "image.yml"
    assert (tmp_path / "proj" / "roles" / "base" / "tasks" / "main.yml").is_file()
    assert (tmp_path / "proj" / "tests" / "test_image.py").is_file()
    check = imgpipe("validate", str(spec))
    assert check.returncode == 0, check.stderr
    again = imgpipe("init", str(tmp_path / "proj"))
    assert again.returncode == 2 and "never overwrites" in again.stderr


def test_init_keeps_an_existing_schema_file_and_says_so(tmp_path):
    """`imgpipe schema > imgpipe.schema.json` first (as the README suggests), then init."""
    project = tmp_path / "proj"
    custom = write(project / "imgpipe.schema.json", '{"custom": "schema, edited by hand"}\n')
    out = imgpipe("init", str(project))
    assert out.returncode == 0, out.stderr
    assert custom.read_text() == '{"custom": "schema, edited by hand"}\n'
    assert f"skipped {custom}: already exists" in out.stdout
    assert f"wrote {custom}" not in out.stdout and f"wrote {project / 'image.yml'}" in out.stdout


def test_validate_runs_ansible_syntax_check(tmp_path):
    spec = write(
        tmp_path / "spec.yml",
        "imgpipe: 1\nname: x\nprovision: {roles: [broken]}\ntargets: {local: {builder: libvirt}}\n",
    )
    write(tmp_path / "roles" / "broken" / "tasks" / "main.yml", "- name: bad\n  no_such_module_xyz: {}\n")
    out = imgpipe("validate", str(spec))
    assert out.returncode == 2
    assert "Ansible syntax check failed" in out.stderr and "no_such_module_xyz" in out.stderr


def test_inspect_shows_origins_and_masks_sensitive(tmp_path):
    spec = write(
        tmp_path / "spec.yml",
        """\
imgpipe: 1
name: x
variables:
  title: {type: string, default: hello}
  token: {type: string, sensitive: true}
provision: {roles: [nginx]}
targets: {local: {builder: libvirt}}
""",
    )
    env = {"IMGPIPE_VAR_token": "s3cr3t-value", "PATH": "/usr/bin:/bin"}
    out = imgpipe("inspect", str(spec), "--var", "title=cli", "--json", env=env)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["variables"]["title"] == {"value": "cli", "origin": "--var", "sensitive": False}
    assert plan["variables"]["token"]["value"] == "***"
    assert plan["variables"]["token"]["origin"] == "env IMGPIPE_VAR_token"
    assert plan["roles"][0]["path"] == str(REPO / "roles" / "nginx")
    assert plan["targets"]["local"]["accelerator"] == "auto"
    text = imgpipe("inspect", str(spec), env=env)
    assert "s3cr3t-value" not in text.stdout + text.stderr and "token = '***'" in text.stdout


def test_stray_environment_variable_is_one_warning_while_flags_stay_strict(tmp_path):
    spec = write(
        tmp_path / "spec.yml",
        "imgpipe: 1\nname: x\nvariables:\n  title: {type: string, default: hi}\n"
        "targets: {local: {builder: libvirt}}\n",
    )
    env = {"PATH": "/usr/bin:/bin", "IMGPIPE_VAR_titel": "typo", "IMGPIPE_VAR_unrelated": "x"}
    out = imgpipe("validate", str(spec), env=env)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: ignoring environment variables for undeclared variables: "
        "IMGPIPE_VAR_titel (did you mean 'title'?), IMGPIPE_VAR_unrelated"
    ]
    flag = imgpipe("validate", str(spec), "--var", "titel=typo", env=env)
    assert flag.returncode == 2 and "--var titel: variable 'titel' is not declared" in flag.stderr
    var_file = write(tmp_path / "vars.yml", "titel: typo\n")
    from_file = imgpipe("validate", str(spec), "--var-file", str(var_file), env=env)
    assert from_file.returncode == 2 and "variable 'titel' is not declared" in from_file.stderr


def test_schema_covers_builders_and_descriptions():
    out = imgpipe("schema")
    schema = json.loads(out.stdout)
    assert schema["properties"]["targets"]["additionalProperties"] == {
        "oneOf": [{"$ref": "#/$defs/AwsBuilderSettings"}, {"$ref": "#/$defs/LibvirtSettings"}]
    }
    libvirt = schema["$defs"]["LibvirtSettings"]["properties"]
    assert libvirt["memory_mb"]["description"] and libvirt["builder"]["const"] == "libvirt"
    aws = schema["$defs"]["AwsBuilderSettings"]["properties"]
    assert aws["builder"]["const"] == "aws" and aws["source_ami_filter"]["description"]


@pytest.mark.parametrize(
    "only,exclude,expected",
    [
        ([], [], ("a", "b", "c")),
        (["b"], [], ("b",)),
        ([], ["a"], ("b", "c")),
    ],
)
def test_target_selection(only, exclude, expected):
    from imgpipe.cli import _select_targets

    assert _select_targets(["a", "b", "c"], only, exclude) == expected


def test_target_selection_suggests():
    from imgpipe.cli import _select_targets

    with pytest.raises(SpecError, match=r"--only locl: no such target \(did you mean 'local'\?\)"):
        _select_targets(["local", "aws"], ["locl"], [])
    with pytest.raises(SpecError, match="leave no target"):
        _select_targets(["local"], [], ["local"])


def test_json_envelope_keys_are_pinned(capsys):
    JsonReporter().emit(Event("local", "stage_finished", {"stage": "seal", "seconds": 1.5}, time=1.0))
    line = json.loads(capsys.readouterr().out)
    assert line == {
        "v": 1,
        "event": "stage_finished",
        "target": "local",
        "time": 1.0,
        "stage": "seal",
        "seconds": 1.5,
    }


@pytest.mark.parametrize(
    "codes,expected",
    [
        ((2,), 2),  # every failed target failed on its spec: bad input, nothing was built
        ((2, 2), 2),
        ((2, 1), 1),  # one real build failure makes it a failed build
        ((1,), 1),
        ((2, 130), 130),  # an interrupt wins
        ((1, 130), 130),
    ],
)
def test_bake_exit_code_from_target_errors(codes, expected):
    from imgpipe.cli import _bake_exit_code
    from imgpipe.errors import BuildError, Interrupted

    kinds = {1: BuildError, 2: SpecError, 130: Interrupted}
    errors = {f"t{i}": kinds[code]("x") for i, code in enumerate(codes)}
    assert _bake_exit_code(errors) == expected


def test_bake_flags_parse_before_any_vm_starts(tmp_path):
    """Every bake flag parses; a bad target or flag value fails with exit 2 before building."""
    out = imgpipe(
        "bake",
        "examples/web.yml",
        "--only",
        "locl",
        "--except",
        "x",
        "--parallel",
        "2",
        "--var",
        "site_title=t",
        "--on-error",
        "abort",
        "--json",
        "--output",
        str(tmp_path),
    )
    assert out.returncode == 2, out.stderr
    assert "--only locl: no such target (did you mean 'local'?)" in out.stderr
    bad = imgpipe("bake", "examples/web.yml", "--parallel", "0")
    assert bad.returncode == 2 and "--parallel" in bad.stderr
    help_text = imgpipe("bake", "--help").stdout
    assert "Usage: " in help_text and "SPEC" in help_text and "{spec}" not in help_text


def test_sensitive_value_on_command_line_is_warned_about_not_echoed(tmp_path):
    spec = write(
        tmp_path / "spec.yml",
        "imgpipe: 1\nname: x\nvariables:\n  token: {type: string, sensitive: true}\n"
        "targets: {local: {builder: libvirt}}\n",
    )
    out = imgpipe("validate", str(spec), "--var", "token=hunter2-secret")
    assert out.returncode == 0, out.stderr
    assert "warning: sensitive variable 'token' was given with --var" in out.stderr
    assert "hunter2-secret" not in out.stdout + out.stderr
