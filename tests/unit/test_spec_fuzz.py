"""Mutated specs through the real `imgpipe validate`, in-process: never a traceback,
exit 2 for invalid input and 0 for valid, and every problem line of an invalid spec
starts with the spec's path and :line:col."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import typer.testing
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imgpipe.cli import app

MINIMAL: dict[str, Any] = {"imgpipe": 1, "name": "web", "targets": {"local": {"builder": "libvirt"}}}
FULL: dict[str, Any] = {
    "imgpipe": 1,
    "name": "web-{{ version }}",
    "description": "Nginx {{ version }} for {{ teams | join(', ') }}",
    "variables": {
        "version": {"type": "string", "default": "12", "validation": {"pattern": "[0-9]+", "max": 8}},
        "vcpus": {"type": "integer", "default": 2, "validation": {"min": 1, "max": 8}},
        "teams": {"type": "list", "default": ["web", "ops"]},
        "debug": {"type": "boolean", "default": False},
        "zone": {"type": "string", "default": "eu", "validation": {"choices": ["eu", "us"]}},
        "token": {"type": "string", "default": "s3cret", "sensitive": True},
    },
    "source": {"bootstrap": {"distro": "debian", "suite": "bookworm", "packages": ["curl"], "disk_gb": 4}},
    "provision": {
        "roles": [{"role": "nginx", "vars": {"nginx_index_title": "{{ token }} {{ whatever }}"}}],
        "timeout_s": 600,
    },
    "seal": {"enabled": True, "skip": ["trim"]},
    "targets": {"local": {"builder": "libvirt", "cpus": "{{ vcpus }}", "memory_mb": 2048}},
}
BASES = [MINIMAL, FULL]

# Mappings that are models (extra keys forbidden), and the fields each allows.
MODELS: dict[tuple[str, ...], set[str]] = {
    (): {"imgpipe", "name", "description", "variables", "source", "provision", "seal", "targets"},
    ("source",): {"bootstrap", "image"},
    ("source", "bootstrap"): {"distro", "suite", "packages", "disk_gb"},
    ("provision",): {"roles", "playbooks", "roles_path", "requirements", "timeout_s"},
    ("seal",): {"enabled", "skip"},
    ("targets", "local"): {
        "builder",
        *("uri", "accelerator", "memory_mb", "cpus", "disk_gb", "format", "compression"),
        *("ssh_timeout_s", "shutdown_timeout_s"),
    },
    ("variables", "vcpus"): {"type", "default", "required", "description", "sensitive", "validation"},
    ("variables", "vcpus", "validation"): {"pattern", "min", "max", "choices", "message"},
}
# Fields whose value is checked as a scalar: a list or mapping there is always wrong.
SCALARS = [
    ("name",),
    ("imgpipe",),
    ("targets", "local", "builder"),
    ("targets", "local", "cpus"),
    ("seal", "enabled"),
    ("source", "bootstrap", "disk_gb"),
    ("provision", "timeout_s"),
    ("variables", "vcpus", "type"),
    ("variables", "vcpus", "validation", "min"),
]
REQUIRED = [("name",), ("targets",), ("targets", "local", "builder")]
ODD = (
    "\x00\x01\x07\x08\x0b\x0c\x1b\x7f\x85\x9f\xa0\u00ad\u034f\u061c\u200b\u200d\u200e\u200f"
    "\u202a\u202e\u2066\u2069\u2028\u2029\ufeff\ufffd\ufffe\U0001f600\U000e0001"
    "\ud800\udfff\t\r\n 'é\"\\:#&*!|>%@`-?[]{}"
)
odd_text = st.text(alphabet=st.sampled_from(ODD) | st.characters(), max_size=40)
DEEP_OPEN = {"list": ("[", "]"), "map": ("{a: ", "}")}


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def _dump(data: Any, style: str) -> str:
    if style == "json":
        return json.dumps(data, indent=1, ensure_ascii=False)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C emitter keeps generation cheap
    try:
        return yaml.dump(
            data, Dumper=dumper, sort_keys=False, allow_unicode=style == "yaml-unicode", width=80
        )
    except UnicodeEncodeError:  # libyaml cannot emit a lone surrogate; the Python emitter escapes it
        return yaml.dump(data, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=False, width=80)


@st.composite
def mutated_spec(draw: st.DrawFn) -> tuple[bytes, str]:
    """A spec's bytes and what validate must say: 'valid', 'invalid' or 'either'."""
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    op = draw(
        st.sampled_from(
            [
                *("none", "unknown_key", "delete_required", "wrong_type", "any_value"),
                *("deep", "huge", "odd_unicode", "bad_declaration", "template"),
                *("broken_yaml", "duplicate_key", "tab", "control_char", "surrogate", "bytes"),
                *("alias_bomb", "yaml_tag", "odd_name"),
            ]
        )
    )
    expect = "either"
    if op == "none":
        expect = "valid"
    elif op == "unknown_key":
        where = draw(st.sampled_from([p for p in MODELS if _exists(data, p)]))
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=14))
        key = key if key not in MODELS[where] else key + "_x"
        _get(data, where)[key] = draw(st.sampled_from([1, "x", None, [], {}]))
        expect = "invalid"
    elif op == "delete_required":
        where = draw(st.sampled_from(REQUIRED))
        del _get(data, where[:-1])[where[-1]]
        expect = "invalid"
    elif op == "wrong_type":
        where = draw(st.sampled_from([p for p in SCALARS if _exists(data, p)]))
        _set(data, where, draw(st.sampled_from([[], [1, 2], {}, {"a": 1}])))
        expect = "invalid"
    elif op == "any_value":
        where = draw(st.sampled_from(_paths(data)))
        value = draw(
            st.none() | st.booleans() | st.integers() | st.floats() | odd_text | st.lists(st.integers())
        )
        data = _set(data, where, value)
    elif op == "deep":
        where = draw(st.sampled_from(_paths(data)))
        depth, kinds = draw(st.integers(1, 400)), draw(st.integers(0, 2**400))
        nested: Any = "x"
        for level in range(depth):  # deeper than json.dumps allows comes from the text below
            nested = [nested] if kinds >> level & 1 else {"a": nested}
        data = _set(data, where, nested)
    elif op == "huge":
        size = draw(st.sampled_from([1_000, 20_000, 200_000]))
        text = draw(st.sampled_from("aé€😀")) * size
        where = draw(st.sampled_from([("description",), ("name",), ("targets", "local", "uri")]))
        data = _set(data, where, text)
        expect = "valid" if where != ("name",) else "invalid"
    elif op == "odd_unicode":
        where = draw(st.sampled_from(_paths(data)[1:]))
        data = _set(data, where, draw(odd_text))
        if draw(st.booleans()) and isinstance(_get(data, where[:-1]), dict):
            parent = _get(data, where[:-1])
            parent[draw(odd_text)] = parent.pop(where[-1])
    elif op == "bad_declaration":
        variables = data.setdefault("variables", {})
        variables["v"] = draw(
            st.sampled_from(
                [
                    {"type": "integer", "default": "two"},
                    {"type": "string", "default": 3},
                    {"type": "boolean", "default": "yes"},
                    {"type": "list", "default": {"a": 1}},
                    {"type": "map", "default": [1]},
                    {"type": "number", "default": True},
                    {"type": "string", "validation": {"pattern": "(unclosed"}},
                    {"type": "integer", "validation": {"min": 5, "max": 1}},
                    {"type": "integer", "validation": {"pattern": "x"}},
                    {"type": "boolean", "validation": {"min": 1}},
                    {"type": "string", "validation": {"choices": [1, 2]}},
                    {"type": "string", "default": "b", "validation": {"choices": ["a"]}},
                    {"type": "float"},
                    {"type": "string", "required": "maybe"},
                    {"type": "string", "default": "x", "validaton": {}},
                    {"type": "string", "required": True},  # no value given: required
                ]
            )
        )
        expect = "invalid"
    elif op == "odd_name":
        odd = draw(odd_text) + draw(st.sampled_from("\n\x00\u202e\u200b\t"))  # not NEL: a YAML line break
        field = draw(st.sampled_from(["roles", "playbooks", "roles_path"]))
        data.setdefault("provision", {})[field] = [odd + draw(odd_text)]
        expect = "invalid"
    elif op == "template":
        where = draw(st.sampled_from([p for p in _paths(data) if isinstance(_get(data, p), str)]))
        name = draw(st.sampled_from(["version", "vcpus", "teams", "token", "verison", "nope", ""]))
        form = draw(
            st.sampled_from(["{{ %s }}", "x-{{ %s }}", "{{ %s", "{%% if %s %%}", "{{ %s.__class__ }}"])
        )
        data = _set(data, where, form % name)
    style = draw(st.sampled_from(["yaml", "yaml-unicode", "json"]))
    text = _dump(data, style)
    if op == "deep":
        opener, closer = DEEP_OPEN[draw(st.sampled_from(sorted(DEEP_OPEN)))]
        depth = draw(st.integers(1, 5000))
        text += f"\nextra: {opener * depth}1{closer * depth}\n"
        expect = "invalid"  # 'extra' is an unknown top-level key even when the nesting parses
    lines = text.splitlines(keepends=True)
    if op == "broken_yaml":
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, "broken: [unclosed, \n")
        expect = "invalid"
    elif op == "duplicate_key":
        candidates = [i for i, line in enumerate(lines) if re.match(r"^ *[A-Za-z_]\w*: \S", line)]
        if candidates:
            i = draw(st.sampled_from(candidates))
            lines.insert(i + 1, lines[i])
            expect = "invalid"
    elif op == "tab":
        candidates = [i for i, line in enumerate(lines) if line.startswith("  ")]
        if candidates:
            i = draw(st.sampled_from(candidates))
            lines[i] = "\t" + lines[i].lstrip(" ")
            expect = "either" if style == "json" else "invalid"  # JSON (flow style) allows tabs
    text = "".join(lines)
    if op in ("control_char", "surrogate"):
        chars = "\x00\x01\x08\x0b\x0c\x0e\x1f\x7f\x80\x9f" if op == "control_char" else "\ud800\udc00\udfff"
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(chars)) + text[at:]
        expect = "invalid"
    if op == "alias_bomb":
        fanout = draw(st.integers(2, 12))
        text += "bomb0: &b0 [" + ", ".join(["x"] * fanout) + "]\n"
        for level in range(1, draw(st.integers(2, 9))):
            text += f"bomb{level}: &b{level} [" + ", ".join([f"*b{level - 1}"] * fanout) + "]\n"
        expect = "invalid"  # too many values, or unknown keys (or, after JSON, a second document)
    if op == "yaml_tag":
        tagged = ["!!int x", "!!bool maybe", "!!float 1.2.3", "!!timestamp 2020-13-45", "!!binary '#'"]
        tagged += ["!!python/name:os.system ''", "!foo x", "*undefined", "1" * 5000, "!!int 0o8", "!!merge x"]
        text += f"\ntagged: {draw(st.sampled_from(tagged))}\n"
        expect = "invalid"
    raw = text.encode("utf-8", "surrogatepass")
    if op == "bytes":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at + draw(st.integers(0, 3)) :]
    return raw, expect


def _exists(data: Any, path: tuple[str, ...]) -> bool:
    try:
        _get(data, path)
    except (KeyError, TypeError):
        return False
    return True


@pytest.fixture
def validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run `imgpipe validate` in-process on the given bytes; Ansible's syntax check is an
    external process that the spec layer does not own, so it is left out here."""
    import imgpipe.provision

    for key in [k for k in os.environ if k.startswith("IMGPIPE_VAR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(imgpipe.provision, "syntax_check", lambda loaded: None)
    command = typer.main.get_command(app)  # the same command `imgpipe` runs, built once, not per call
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: command)
    spec = tmp_path / "spec.yml"
    runner = CliRunner()

    def run(raw: bytes):  # type: ignore[no-untyped-def]
        spec.write_bytes(raw)
        return runner.invoke(app, ["validate", str(spec)]), str(spec)

    return run


def _check(result: Any, spec: str, expect: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), output
    if expect != "either":
        assert result.exit_code == (0 if expect == "valid" else 2), output
    if result.exit_code == 0:
        return
    located = re.compile(re.escape(spec) + r":\d+:\d+: \S")
    head, *rest = result.stderr.rstrip("\n").split("\n")
    assert head.startswith("error: "), head
    head = head.removeprefix("error: ")
    assert located.match(head) or head.startswith(f"{spec}: invalid spec") or head == "invalid variables:", (
        head
    )
    for line in rest:
        assert line.startswith("  ") and located.match(line[2:]), f"unlocated error line: {line!r}"


def test_base_specs_are_valid(validate):
    for base in BASES:
        result, spec = validate(yaml.safe_dump(base).encode())
        _check(result, spec, "valid")


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=mutated_spec())
def test_mutated_specs_never_crash(validate, case):
    raw, expect = case
    result, spec = validate(raw)
    _check(result, spec, expect)


GOOD = "imgpipe: 1\nname: web\ntargets:\n  local: {builder: libvirt}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # each found by the fuzzer: a traceback, an unlocated line, or a lost problem before the fix
        (GOOD + "'[': 1\n", ":5:1: ['[']: unknown field"),
        (GOOD + "variables: {Str: {type: x}}\n", ":5:25: variables.Str.type: Input should be"),
        (GOOD + "variables: {str: {type: []}}\n", ":5:25: variables.str.type: Input should be"),
        (GOOD + "description: !!int x\n", ":5:14: YAML syntax error: not a valid int"),
        (GOOD + "description: !!bool maybe\n", ":5:14: YAML syntax error: not a valid bool"),
        (GOOD + "description: " + "1" * 5000 + "\n", ":5:14: YAML syntax error: not a valid int"),
        (GOOD + "description: a\x00\n", ":5:15: YAML syntax error: character #x0000 is not allowed"),
        ("description: é\x01\n", ":1:15: YAML syntax error: character #x0001 is not allowed"),
        (GOOD + "x: " + "[" * 150 + "]" * 150, ":5:103: YAML syntax error: nested deeper than 100 levels"),
        (
            GOOD + "x: " + "[" * 3000,
            ":5:1003: YAML syntax error: exceeded maximum nesting depth",
        ),  # libyaml's
        (GOOD + "x:\n\t- a\n", ":6:1: YAML syntax error: found character that cannot start any token (a tab"),
        (
            GOOD
            + "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
            ),
            ":9:4: YAML syntax error: more than 50000 values (after expanding aliases)",
        ),
        (
            GOOD + 'provision: {roles: ["a\\nb"]}\n',
            ":5:21: provision.roles[0]: control or invisible character",
        ),
        (GOOD + 'provision: {playbooks: ["p\\u202e.yml"]}\n', ":5:25: provision.playbooks[0]: control or"),
    ],
)
def test_fuzzer_findings_stay_fixed(validate, text, expected):
    result, spec = validate(text.encode())
    _check(result, spec, "invalid")
    assert f"{spec}{expected}" in result.stderr
