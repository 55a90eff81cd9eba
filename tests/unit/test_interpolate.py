"""`{{ var }}` in imgpipe's own fields: native types, role vars untouched, located
errors with "did you mean", and a sandbox that keeps templates away from Python."""

import pytest

from imgpipe.errors import SpecError
from imgpipe.spec import load_spec
from imgpipe.spec.variables import resolve_variables
from tests.conftest import write

SPEC = """\
imgpipe: 1
name: "web-{{ version }}"
description: "{{ teams | join(', ') }} on {{ version }}"
variables:
  version: {type: string, default: "12"}
  vcpus: {type: integer, default: 4}
  teams: {type: list, default: [web, ops]}
  extras: {type: list, default: [curl, jq]}
  token: {type: string, default: s3cret, sensitive: true}
  site: {type: string}
source:
  bootstrap: {packages: "{{ extras }}"}
provision:
  roles:
    - role: nginx
      vars:
        title: "{{ token }} {{ not_declared_here }}"
        nested: {deep: ["{{ site }}"]}
targets:
  local: {builder: libvirt, cpus: "{{ vcpus }}", memory_mb: "{{ vcpus * 512 }}"}
"""


@pytest.fixture(autouse=True)
def _no_env_vars(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("IMGPIPE_VAR_")]:
        monkeypatch.delenv(key)


def load(tmp_path, text=SPEC, **kwargs):
    return load_spec(write(tmp_path / "spec.yml", text), **kwargs)


def error(tmp_path, text, **kwargs):
    spec = write(tmp_path / "spec.yml", text)
    with pytest.raises(SpecError) as info:
        load_spec(spec, **kwargs)
    assert info.value.exit_code == 2
    return str(info.value), str(spec)


def test_types_are_preserved(tmp_path):
    loaded = load(tmp_path)
    assert loaded.spec.name == "web-12"
    assert loaded.spec.description == "web, ops on 12"
    assert loaded.targets["local"].cpus == 4 and loaded.targets["local"].memory_mb == 2048
    assert loaded.spec.source.bootstrap.packages == ("curl", "jq")
    assert loaded.used_variables == {"version", "teams", "vcpus", "extras"}


def test_string_that_is_one_expression_keeps_its_type_else_text(tmp_path):
    loaded = load(tmp_path, SPEC.replace('"web-{{ version }}"', '"{{ version }}"'))
    assert loaded.spec.name == "12"  # a string variable stays a string, not the number 12
    msg, f = error(tmp_path, SPEC.replace('cpus: "{{ vcpus }}"', 'cpus: "x{{ vcpus }}"'))
    assert f"{f}:20:35: targets.local.cpus:" in msg and "found 'x4'" in msg


def test_role_vars_are_left_for_ansible(tmp_path):
    ref = load(tmp_path).spec.provision.role_refs()[0]
    assert ref.vars == {"title": "{{ token }} {{ not_declared_here }}", "nested": {"deep": ["{{ site }}"]}}


def test_declarations_are_not_rendered(tmp_path):
    text = SPEC.replace("site: {type: string}", 'site: {type: string, default: "{{ vcpus }}"}')
    assert load(tmp_path, text).variables["site"].value == "{{ vcpus }}"


def test_values_from_every_source_are_rendered(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGPIPE_VAR_vcpus", "2")
    vars_file = write(tmp_path / "v.yml", "version: '13'\n")
    loaded = load(tmp_path, var_files=[vars_file], cli_vars=["teams=[a]"])
    assert (loaded.spec.name, loaded.targets["local"].cpus, loaded.spec.description) == (
        "web-13",
        2,
        "a on 13",
    )


def test_undefined_name_with_position_and_suggestion(tmp_path):
    msg, f = error(tmp_path, SPEC.replace("web-{{ version }}", "web-{{ verison }}"))
    assert f"{f}:2:7: name: undefined variable 'verison' (did you mean 'version'?)" in msg


def test_declared_without_value(tmp_path):
    msg, f = error(tmp_path, SPEC.replace("web-{{ version }}", "web-{{ site }}"))
    assert f"{f}:2:7: name: variable 'site' has no value: pass --var site=..." in msg


def test_sensitive_variable_refused_in_own_fields(tmp_path):
    msg, f = error(tmp_path, SPEC.replace("web-{{ version }}", "web-{{ token }}"))
    assert f"{f}:2:7: name: variable 'token' is sensitive: use it in role vars only" in msg
    assert "s3cret" not in msg


def test_template_syntax_error_position(tmp_path):
    msg, f = error(tmp_path, SPEC.replace('cpus: "{{ vcpus }}"', 'cpus: "{{ vcpus }"'))
    assert f"{f}:20:35: targets.local.cpus: template syntax error:" in msg


def test_all_template_problems_reported_together(tmp_path):
    text = SPEC.replace("web-{{ version }}", "{{ a }}").replace('"{{ extras }}"', '"{{ b }}"')
    msg, f = error(tmp_path, text)
    assert "2 problems" in msg
    assert f"{f}:2:7: name: undefined variable 'a'" in msg
    assert f"{f}:12:25: source.bootstrap.packages: undefined variable 'b'" in msg


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ teams.append('x') }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'a' * 10**9 }}",
        "{{ 2 ** 100000000 }}",
    ],
)
def test_sandbox_blocks_python_internals_and_runaway_values(tmp_path, template):
    msg, f = error(tmp_path, SPEC.replace("\"{{ teams | join(', ') }} on {{ version }}\"", f'"{template}"'))
    assert f"{f}:3:14: description: template error:" in msg


def test_resolve_variables_refuses_values_that_differ_from_the_rendered_spec(tmp_path):
    loaded = load(tmp_path)
    assert resolve_variables(loaded, [], ["site=x"])["site"].value == "x"  # not used in own fields
    with pytest.raises(RuntimeError, match="version changed"):
        resolve_variables(loaded, [], ["version=13"])
