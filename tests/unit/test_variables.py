"""Precedence: defaults < var files (in order) < IMGPIPE_VAR_* < --var."""

import pytest

from imgpipe.errors import SpecError
from imgpipe.spec import load_spec
from imgpipe.spec.variables import resolve_variables
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
    assert got["title"].value == "from-env" and got["workers"].value == 3
    got = resolve_variables(loaded, [a, b], ["title=from-cli", "workers=4"])
    assert got["title"].value == "from-cli" and got["workers"].value == 4
    assert got["token"].sensitive


def test_required_missing(loaded):
    with pytest.raises(SpecError, match=r"spec.yml:6:3: variable 'token' is required"):
        resolve_variables(loaded, [], [])


def test_undeclared_and_wrong_type(loaded, tmp_path):
    f = write(tmp_path / "v.yml", "token: x\nworkrs: 2\n")
    with pytest.raises(SpecError) as info:
        resolve_variables(loaded, [f], ["workers=lots"])
    msg = str(info.value)
    assert f"{f}:2:1: variable 'workrs' is not declared in the spec (did you mean 'workers'?)" in msg
    assert "--var workers: variable 'workers': expected integer, found str" in msg
