"""The pipeline's contract, proven with a FakeBuilder that records calls:
success publishes an image, any failure leaves no image and no resource,
--on-error abort keeps the VM for debugging until `gc --build`."""

from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict

import imgpipe.pipeline as pipeline
import imgpipe.spec.load as spec_load
from imgpipe.capture import sha256_file
from imgpipe.core import ImageFile, SSHEndpoint, TargetContext
from imgpipe.errors import BuildError
from imgpipe.events import NullSink
from imgpipe.journal import collect, remove_path
from imgpipe.pipeline import BakeOptions, OnError, bake
from imgpipe.spec import load_spec
from tests.conftest import write


class FakeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    builder: Literal["fake"]
    fail_at: str | None = None


class FakeBuilder:
    Settings: ClassVar[type[BaseModel]] = FakeSettings
    builder_type: ClassVar[str] = "fake"
    calls: ClassVar[list[str]] = []
    vm_dir: ClassVar[Path]

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self.fail_at = ctx.settings.fail_at

    def _step(self, name: str) -> None:
        self.calls.append(f"{self.ctx.target}:{name}")
        if self.fail_at == name:
            raise BuildError(f"fake failure in {name}")

    def prepare(self):
        self._step("prepare")
        return {"kind": "fake"}

    def launch(self):
        vm = self.vm_dir / f"vm-{self.ctx.target}"
        self.ctx.resources.track("fake-vm", remove_path, path=str(vm))
        vm.write_text("running")
        self._step("launch")
        return SSHEndpoint("127.0.0.1", 1, "root", Path("k"), Path("kh"), "SHA256:x", "ssh-ed25519 AAAA x")

    def stop(self):
        self._step("stop")

    def capture(self, dest_dir, basename):
        partial = dest_dir / f".{basename}.qcow2.partial"
        self.ctx.resources.track("partial-image", remove_path, path=str(partial))
        partial.write_bytes(b"image bytes")
        self._step("capture")
        return ImageFile(partial, f"{basename}.qcow2", "qcow2", sha256_file(partial), partial.stat().st_size)

    def debug_hint(self):
        return "fake VM kept"


SPEC = """\
imgpipe: 1
name: demo
seal: {enabled: false}
targets:
  a: {builder: fake}
  b: {builder: fake, fail_at: FAIL}
"""


@pytest.fixture
def fake(monkeypatch, tmp_path, isolated_state):
    monkeypatch.setenv("IMGPIPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(spec_load, "builder_names", lambda: ["fake", "libvirt"])
    monkeypatch.setattr(spec_load, "builder_class", lambda name: FakeBuilder)
    monkeypatch.setattr(pipeline, "builder_class", lambda name: FakeBuilder)
    FakeBuilder.calls = []
    FakeBuilder.vm_dir = tmp_path
    return tmp_path


def run(tmp_path, fail_at, on_error=OnError.cleanup, targets=("a", "b")):
    loaded = load_spec(write(tmp_path / "spec.yml", SPEC.replace("FAIL", str(fail_at))))
    return bake(loaded, BakeOptions(tmp_path / "out", targets, {}, on_error), NullSink())


def leftovers(tmp_path, state):
    return {
        "vms": sorted(p.name for p in tmp_path.glob("vm-*")),
        "partials": sorted(p.name for p in (tmp_path / "out").rglob("*.partial")),
        "workdirs": sorted(p.name for p in (tmp_path / "cache" / "work").glob("*")),
        "journal": sorted(p.name for p in (state / "journal").glob("*.json")),
    }


def test_success_publishes_image_and_removes_everything(fake, isolated_state):
    result = run(fake, None, targets=("a",))
    assert result.ok
    image = result.output_dir / "demo-a.qcow2"
    assert image.read_bytes() == b"image bytes"
    assert (result.output_dir / "SHA256SUMS").read_text().startswith(sha256_file(image))
    assert FakeBuilder.calls == ["a:prepare", "a:launch", "a:stop", "a:capture"]
    assert leftovers(fake, isolated_state) == {"vms": [], "partials": [], "workdirs": [], "journal": []}


@pytest.mark.parametrize("step", ["prepare", "launch", "stop", "capture"])
def test_failure_at_any_step_leaves_no_image_and_no_resource(fake, isolated_state, step):
    result = run(fake, step)
    assert set(result.errors) == {"b"} and f"fake failure in {step}" in str(result.errors["b"])
    assert not (result.output_dir / "demo-b.qcow2").exists()
    assert (result.output_dir / "demo-a.qcow2").exists()  # the other target is unaffected
    assert leftovers(fake, isolated_state) == {"vms": [], "partials": [], "workdirs": [], "journal": []}
    import json

    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert [b["name"] for b in manifest["builds"]] == ["a"]
    assert manifest["imgpipe"]["targets"]["b"]["ok"] is False


def test_abort_keeps_vm_until_gc_build(fake, isolated_state):
    result = run(fake, "stop", on_error=OnError.abort, targets=("b",))
    assert not result.ok
    left = leftovers(fake, isolated_state)
    assert left["vms"] == ["vm-b"] and len(left["journal"]) == 1
    removed, failures = collect(isolated_state / "journal", build_id=result.build_id)
    assert failures == [] and len(removed) == 1
    assert leftovers(fake, isolated_state) == {"vms": [], "partials": [], "workdirs": [], "journal": []}


def test_kept_json_event_is_pinned_and_documented(fake, isolated_state):
    """CI systems parse `--json`: the `kept` line's keys are a contract, listed in the README."""
    import io
    import json

    from imgpipe.report import JsonReporter

    stream = io.StringIO()
    loaded = load_spec(write(fake / "spec.yml", SPEC.replace("FAIL", "stop")))
    options = BakeOptions(fake / "out", ("b",), {}, OnError.abort)
    result = bake(loaded, options, JsonReporter(stream))
    collect(isolated_state / "journal", build_id=result.build_id)
    (kept,) = [line for line in map(json.loads, stream.getvalue().splitlines()) if line["event"] == "kept"]
    assert kept == {"v": 1, "event": "kept", "target": "b", "time": kept["time"], "hint": "fake VM kept"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    events_paragraph = readme[readme.index("`--json` prints") :].split("\n\n")[0]
    assert "`kept`" in events_paragraph and "`hint`" in events_paragraph


def test_cancelled_before_start_prepares_nothing(fake, isolated_state):
    import threading

    cancel = threading.Event()
    cancel.set()
    loaded = load_spec(write(fake / "spec.yml", SPEC.replace("FAIL", "None")))
    result = bake(loaded, BakeOptions(fake / "out", ("a", "b"), {}, parallel=1), NullSink(), cancel)
    assert FakeBuilder.calls == []
    assert {t: e.exit_code for t, e in result.errors.items()} == {"a": 130, "b": 130}
    assert leftovers(fake, isolated_state) == {"vms": [], "partials": [], "workdirs": [], "journal": []}
