"""Variables: precedence defaults < IMGPIPE_VAR_* < var files (in order) < --var (as in
Packer and Terraform), each
validation kind, declaration mistakes, and the exact position each error names."""

import pytest

from imgpipe.errors import SpecError
from imgpipe.spec import load_spec
from imgpipe.spec.variables import HIDDEN, resolve_variables
from tests.conftest import write

SPEC = """\
imgpipe: 1
name: web
variables:
  title: {type: string, default: from-default}
  workers: {type: integer, default: 1}
  token: {type: string, required: true, sensitive: true}
targets:
  local: {builder: libvirt}
"""


@pytest.fixture(autouse=True)
def _no_env_vars(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("IMGPIPE_VAR_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def loaded(tmp_path):
    return load_spec(write(tmp_path / "spec.yml", SPEC))


def test_precedence_chain(loaded, tmp_path, monkeypatch):
    a = write(tmp_path / "a.yml", "title: from-a\nworkers: 2\ntoken: t\n")
    b = write(tmp_path / "b.json", '{"title": "from-b"}')
    got = resolve_variables(loaded, [a, b], [])
    assert got["title"].value == "from-b" and got["title"].origin == f"{b}:1"
    assert got["workers"].value == 2
    monkeypatch.setenv("IMGPIPE_VAR_title", "from-env")
    monkeypatch.setenv("IMGPIPE_VAR_workers", "3")
    got = resolve_variables(loaded, [a, b], [])
    assert got["title"].value == "from-b" and got["workers"].value == 2  # files beat the environment
    got = resolve_variables(loaded, [], ["token=t"])
    assert got["title"].value == "from-env" and got["workers"].value == 3  # the environment beats defaults
    got = resolve_variables(loaded, [a, b], ["title=from-cli", "workers=4"])
    assert got["title"].value == "from-cli" and got["workers"].value == 4
    assert got["token"].sensitive


def test_default_alone(loaded):
    got = resolve_variables(loaded, [], ["token=t"])
    assert (got["title"].value, got["title"].origin) == ("from-default", "default")
    assert got["title"].where == f"{loaded.path}:4:34"


def test_var_file_beats_default(loaded, tmp_path):
    a = write(tmp_path / "a.yml", "title: from-a\n")
    got = resolve_variables(loaded, [a], ["token=t"])
    assert got["title"].value == "from-a" and got["title"].where == f"{a}:1:8"


def test_later_var_file_beats_earlier(loaded, tmp_path):
    a = write(tmp_path / "a.yml", "title: from-a\n")
    b = write(tmp_path / "b.yml", "title: from-b\n")
    assert resolve_variables(loaded, [a, b], ["token=t"])["title"].value == "from-b"
    assert resolve_variables(loaded, [b, a], ["token=t"])["title"].value == "from-a"


def test_var_file_beats_environment_as_in_packer_and_terraform(loaded, tmp_path, monkeypatch):
    a = write(tmp_path / "a.yml", "title: from-a\n")
    monkeypatch.setenv("IMGPIPE_VAR_title", "from-env")
    got = resolve_variables(loaded, [a], ["token=t"])["title"]
    assert (got.value, got.where) == ("from-a", f"{a}:1:8")
    got = resolve_variables(loaded, [], ["token=t"])["title"]
    assert (got.value, got.origin, got.where) == (
        "from-env",
        "env IMGPIPE_VAR_title",
        "environment IMGPIPE_VAR_title",
    )


def test_cli_beats_environment(loaded, monkeypatch):
    monkeypatch.setenv("IMGPIPE_VAR_title", "from-env")
    got = resolve_variables(loaded, [], ["token=t", "title=from-cli"])["title"]
    assert (got.value, got.origin, got.where) == ("from-cli", "--var", "--var title")


def test_required_missing(loaded):
    with pytest.raises(SpecError, match=r"spec.yml:6:3: variable 'token' is required"):
        resolve_variables(loaded, [], [])


def test_load_spec_with_sources_requires_required(tmp_path):
    spec = write(tmp_path / "spec.yml", SPEC)
    with pytest.raises(SpecError, match=r"spec.yml:6:3: variable 'token' is required"):
        load_spec(spec, var_files=[], cli_vars=[])
    loaded = load_spec(spec, cli_vars=["token=t"])
    assert loaded.variables["token"].value == "t"


def test_undeclared_and_wrong_type(loaded, tmp_path):
    f = write(tmp_path / "v.yml", "token: x\nworkrs: 2\n")
    with pytest.raises(SpecError) as info:
        resolve_variables(loaded, [f], ["workers=lots"])
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert f"{f}:2:1: variable 'workrs' is not declared in the spec (did you mean 'workers'?)" in msg
    assert "--var workers: variable 'workers': expected integer, not string (found 'lots')" in msg


def test_undeclared_environment_variables_are_ignored_with_a_warning(tmp_path, monkeypatch, capsys):
    """Like Terraform's TF_VAR_: a stray IMGPIPE_VAR_x (another project's, a CI leftover)
    must not break every spec. The warning is returned, for the CLI to render."""
    monkeypatch.setenv("IMGPIPE_VAR_workrs", "2")
    monkeypatch.setenv("IMGPIPE_VAR_other_project", "x")
    loaded = load_spec(write(tmp_path / "spec.yml", SPEC), cli_vars=["token=t"])
    assert "workrs" not in loaded.variables and loaded.variables["workers"].value == 1
    assert loaded.warnings == (
        "ignoring environment variables for undeclared variables: "
        "IMGPIPE_VAR_other_project, IMGPIPE_VAR_workrs (did you mean 'workers'?)",
    )
    assert capsys.readouterr() == ("", "")  # core code never prints


def test_declared_environment_variables_give_no_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_VAR_workers", "2")
    loaded = load_spec(write(tmp_path / "spec.yml", SPEC), cli_vars=["token=t"])
    assert loaded.variables["workers"].value == 2 and loaded.warnings == ()


def test_bad_var_flag_and_missing_file(loaded, tmp_path):
    with pytest.raises(SpecError) as info:
        resolve_variables(loaded, [tmp_path / "nope.yml"], ["token"])
    msg = str(info.value)
    assert f"{tmp_path / 'nope.yml'}: no such var file" in msg
    assert "--var 'token': expected NAME=VALUE" in msg


def test_var_file_syntax_error_position(loaded, tmp_path):
    f = write(tmp_path / "v.yml", "token: x\ntitle: [\n")
    with pytest.raises(SpecError, match=rf"{f}:3:1: YAML syntax error"):
        resolve_variables(loaded, [f], [])


# --- validation kinds: each failure names where the failing value came from ---------------

VALIDATED = """\
imgpipe: 1
name: web
variables:
  host: {type: string, default: web1, validation: {pattern: '[a-z]+[0-9]*', min: 2, max: 8}}
  port: {type: integer, default: 80, validation: {min: 1, max: 65535}}
  ratio: {type: number, default: 0.5, validation: {min: 0, max: 1}}
  zones: {type: list, default: [a], validation: {min: 1, max: 3}}
  tier: {type: string, default: web, validation: {choices: [web, db], message: "tier must be web or db"}}
  debug: {type: boolean, default: false}
  tags: {type: map, default: {}}
  secret: {type: string, default: hunter2, sensitive: true, validation: {pattern: 'hunter[0-9]'}}
targets:
  local: {builder: libvirt}
"""


def validation_error(tmp_path, *cli_vars, var_file_text=None):
    spec = write(tmp_path / "spec.yml", VALIDATED)
    files = [write(tmp_path / "v.yml", var_file_text)] if var_file_text else []
    with pytest.raises(SpecError) as info:
        load_spec(spec, var_files=files, cli_vars=list(cli_vars))
    assert info.value.exit_code == 2
    return str(info.value), str(spec)


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (
            "host=Web1",
            "--var host: variable 'host': expected a value matching pattern '[a-z]+[0-9]*' (found 'Web1')",
        ),
        ("host=w", "--var host: variable 'host': expected a length of at least 2 (found length 1)"),
        ("host=webwebweb", "--var host: variable 'host': expected a length of at most 8 (found length 9)"),
        ("port=0", "--var port: variable 'port': expected at least 1 (found 0)"),
        ("port=70000", "--var port: variable 'port': expected at most 65535 (found 70000)"),
        ("ratio=1.5", "--var ratio: variable 'ratio': expected at most 1 (found 1.5)"),
        ("zones=[]", "--var zones: variable 'zones': expected a length of at least 1 (found length 0)"),
        (
            "zones=[a, b, c, d]",
            "--var zones: variable 'zones': expected a length of at most 3 (found length 4)",
        ),
        ("tier=cache", "--var tier: variable 'tier': tier must be web or db (found 'cache')"),
    ],
)
def test_each_validation_kind(tmp_path, flag, expected):
    msg, _ = validation_error(tmp_path, flag)
    assert expected in msg


def test_choices_default_message(tmp_path):
    spec = write(tmp_path / "spec.yml", VALIDATED.replace(', message: "tier must be web or db"', ""))
    with pytest.raises(
        SpecError, match=r"--var tier: variable 'tier': expected one of 'web', 'db' \(found 'x'\)"
    ):
        load_spec(spec, cli_vars=["tier=x"])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("host: 12", "expected string, not integer (found 12)"),
        ("port: '80'", "expected integer, not string (found '80')"),
        ("port: true", "expected integer, not boolean (found True)"),
        ("ratio: high", "expected number, not string (found 'high')"),
        ("zones: a", "expected list, not string (found 'a')"),
        ("debug: 'yes'", "expected boolean, not string (found 'yes')"),
        ("tags: [a]", "expected map, not list (found ['a'])"),
    ],
)
def test_type_mismatch_per_type_names_var_file_position(tmp_path, line, expected):
    msg, _ = validation_error(tmp_path, var_file_text=f"tier: db\n{line}\n")
    name = line.split(":")[0]
    column = len(name) + 3
    assert f"{tmp_path / 'v.yml'}:2:{column}: variable '{name}': {expected}" in msg


def test_environment_origin_in_message(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_VAR_port", "0")
    msg, _ = validation_error(tmp_path)
    assert "environment IMGPIPE_VAR_port: variable 'port': expected at least 1 (found 0)" in msg


def test_sensitive_value_never_in_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_VAR_secret", "topsecret")
    msg, _ = validation_error(tmp_path)
    assert "topsecret" not in msg
    assert (
        f"environment IMGPIPE_VAR_secret: variable 'secret': expected a value matching pattern "
        f"'hunter[0-9]' {HIDDEN}" in msg
    )
    msg, _ = validation_error(tmp_path, var_file_text="secret: [topsecret]\n")
    assert "topsecret" not in msg and f"expected string, not list {HIDDEN}" in msg


# --- the declarations themselves: errors at the spec's own positions ----------------------


def declaration_error(tmp_path, declaration: str) -> tuple[str, str]:
    text = f"imgpipe: 1\nname: web\nvariables:\n  v: {declaration}\ntargets:\n  local: {{builder: libvirt}}\n"
    spec = write(tmp_path / "spec.yml", text)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.exit_code == 2
    return str(info.value), str(spec)


@pytest.mark.parametrize(
    ("declaration", "where", "expected"),
    [
        (
            "{type: integer, default: two}",
            "4:31",
            "variables.v.default: expected integer, not string (found 'two')",
        ),
        ("{type: list, default: a}", "4:28", "variables.v.default: expected list, not string (found 'a')"),
        (
            "{type: string, default: b, validation: {choices: [a]}}",
            "4:30",
            "variables.v.default: expected one of 'a' (found 'b')",
        ),
        (
            "{type: string, validation: {pattern: '(x'}}",
            "4:43",
            "variables.v.validation.pattern: pattern is not a valid regular expression",
        ),
        (
            "{type: integer, validation: {min: 5, max: 1}}",
            "4:48",
            "variables.v.validation.max: max (1) is less than min (5)",
        ),
        (
            "{type: integer, validation: {pattern: x}}",
            "4:44",
            "variables.v.validation.pattern: pattern applies to strings only (type is integer)",
        ),
        (
            "{type: boolean, validation: {min: 1}}",
            "4:40",
            "variables.v.validation.min: min applies to numbers",
        ),
        (
            "{type: integer, validation: {choices: [1, a]}}",
            "4:48",
            "variables.v.validation.choices[1]: expected integer",
        ),
        ("{type: float}", "4:13", "variables.v.type: Input should be 'string'"),
        (
            "{type: string, validaton: {}}",
            "4:21",
            "variables.v.validaton: unknown field (did you mean 'validation'?)",
        ),
    ],
)
def test_declaration_mistakes(tmp_path, declaration, where, expected):
    msg, spec = declaration_error(tmp_path, declaration)
    assert f"{spec}:{where}: {expected}" in msg


def test_variable_name_must_be_an_identifier(tmp_path):
    spec = write(
        tmp_path / "spec.yml",
        "imgpipe: 1\nname: web\nvariables:\n  my-var: {}\ntargets:\n  local: {builder: libvirt}\n",
    )
    with pytest.raises(SpecError, match=r"spec.yml:4:3: variables.my-var: a variable name must be letters"):
        load_spec(spec)
