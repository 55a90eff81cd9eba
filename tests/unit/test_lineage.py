"""Lineage without VMs: `source.parent` references parse or fail with their location; a
parent resolves through a SQLite catalog of fabricated builds (a channel's build, or a build
by id), and a revoked, pruned or failed one is refused naming it; the child's fingerprint
moves with its parent channel and says so; `imgpipe nightly` orders specs parents first
and reports a cycle as a located error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from imgpipe.catalog import Catalog, open_catalog
from imgpipe.errors import SpecError
from imgpipe.lineage import (
    ParentRef,
    build_order,
    chain,
    parse_parent_ref,
    resolve_parents,
    with_parents,
)
from imgpipe.spec.load import load_spec
from tests.conftest import write

AMI_ID = "ami-0123456789abcdef0"
SHA = "ab" * 32


def child_spec(directory: Path, parent: str, name: str = "child", targets: str = "") -> Path:
    targets = targets or "  local: {builder: libvirt}\n"
    text = f"imgpipe: 1\nname: {name}\nsource:\n  parent: {parent!r}\ntargets:\n{targets}"
    return write(directory / f"{name}.yml", text)


# -- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("base@stable", ParentRef("base", None, channel="stable")),
        ("base@20261127T053122Z-dc0ed0", ParentRef("base", None, build="20261127T053122Z-dc0ed0")),
        ("base@2026112", ParentRef("base", None, build="2026112")),  # a unique prefix
        ("base/local@latest", ParentRef("base", "local", channel="latest")),
        ("my-base.v2/ec2_eu@prod-1", ParentRef("my-base.v2", "ec2_eu", channel="prod-1")),
    ],
)
def test_parent_references_parse(text, ref):
    assert parse_parent_ref(text) == ref
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("base", "expected NAME@CHANNEL"),
        ("base@", "expected NAME@CHANNEL"),
        ("Base@stable", "expected NAME@CHANNEL"),
        ("base@stable@x", "expected NAME@CHANNEL"),
        ("base/a/b@stable", "expected NAME@CHANNEL"),
        ("base@Stable", "neither a channel name"),
        ("base@-x", "neither a channel name"),
    ],
)
def test_bad_parent_references_are_refused(text, says):
    with pytest.raises(ValueError, match=says):
        parse_parent_ref(text)


def test_a_bad_reference_is_a_located_spec_error(tmp_path):
    path = child_spec(tmp_path, "base@Stable")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert "child.yml:4:" in str(caught.value) and "source.parent" in str(caught.value)
    assert "neither a channel name" in str(caught.value)


def test_exactly_one_source_kind(tmp_path):
    path = write(
        tmp_path / "two.yml",
        "imgpipe: 1\nname: two\nsource:\n  bootstrap: {}\n  parent: base@stable\n"
        "targets:\n  local: {builder: libvirt}\n",
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    text = str(caught.value)
    assert "two.yml:4:" in text and "exactly one of 'bootstrap', 'image' or 'parent'" in text


def test_an_aws_target_of_a_child_names_no_source_ami(tmp_path):
    aws = "  ec2: {builder: aws, aws: {region: eu-west-1}}\n"
    loaded = load_spec(child_spec(tmp_path, "base@stable", targets=aws))  # no source_ami needed
    assert loaded.targets["ec2"].source_ami is None  # type: ignore[attr-defined]
    both = "  ec2: {builder: aws, aws: {region: eu-west-1}, source_ami: " + AMI_ID + "}\n"
    with pytest.raises(SpecError, match="source.parent is where this target starts"):
        load_spec(child_spec(tmp_path, "base@stable", name="both", targets=both))


# -- resolution against a catalog of fabricated builds -------------------------------------


@pytest.fixture
def catalog(tmp_path, monkeypatch) -> Catalog:
    monkeypatch.setenv("IMGPIPE_STATE_DIR", str(tmp_path / "state"))
    cat = open_catalog(f"sqlite:///{tmp_path / 'lineage.sqlite'}")
    yield cat
    cat.close()


_COUNTER = iter(range(1000))


def fabricate(
    catalog: Catalog,
    out: Path,
    spec: str = "base",
    targets: dict[str, str] | None = None,
    status: str = "succeeded",
    parents: dict[str, tuple[str, str, str]] | None = None,
) -> str:
    """A build of `spec` in the catalog: each target an image file (written under `out`)
    or, for a value "ami:REGION,...", AMIs in those regions."""
    targets = targets or {"local": "file"}
    build_id = f"20261127T{next(_COUNTER):06d}Z-abcdef"
    catalog.claim_spec(spec, f"test:{spec}")
    catalog.start_build(
        build_id, spec, f"/specs/{spec}.yml", list(targets), imgpipe_version="0", ansible_core="0",
        parents=parents,
    )  # fmt: skip
    for target, kind in targets.items():
        record: dict = {"output_dir": str(out / spec / build_id)}
        if kind == "file":
            name = f"{spec}-{target}.qcow2"
            write(out / spec / build_id / name, "image")
            record |= {"artifact_id": name, "files": [{"name": name, "size": 5, "sha256": SHA}]}
        else:
            regions = kind.removeprefix("ami:").split(",")
            images = [
                {"region": r, "image_id": f"ami-{i:017x}", "snapshot_ids": []} for i, r in enumerate(regions)
            ]
            record |= {"artifact_id": images[0]["image_id"], "data": {"images": images}}
        catalog.finish_target(
            build_id, target, status=status, fingerprint="f", fingerprint_parts={}, publish_fingerprint=None,
            record=record,
        )  # fmt: skip
    catalog.finish_build(build_id, status)
    return build_id


def point(catalog: Catalog, spec: str, channel: str, build_id: str) -> None:
    token = f"t-{next(_COUNTER)}"
    journal = {"token": token, "owner": {}, "from": None, "to": build_id, "by": "test", "state": "moving"}
    catalog.begin_channel_move(spec, channel, {**journal, "places": []})
    catalog.end_channel_move(spec, channel, token, "moved")


def test_a_channel_resolves_to_its_builds_image_file(catalog, tmp_path):
    first = fabricate(catalog, tmp_path / "out")
    point(catalog, "base", "stable", first)
    loaded = load_spec(child_spec(tmp_path, "base@stable"))
    (parent,) = resolve_parents(catalog, loaded).values()
    assert parent.build_id == first and parent.target == "local" and parent.kind == "image"
    assert parent.path == str(tmp_path / "out" / "base" / first / "base-local.qcow2")
    assert parent.sha256 == SHA  # as recorded: not hashed again
    assert parent.catalog_entry() == (first, "local", "base@stable")
    by_build = load_spec(child_spec(tmp_path, f"base@{first[:12]}", name="bybuild"))
    assert resolve_parents(catalog, by_build)["local"].build_id == first


def test_what_a_parent_reference_cannot_find_is_said(catalog, tmp_path):
    def error(parent: str) -> str:
        with pytest.raises(SpecError) as caught:
            resolve_parents(catalog, load_spec(child_spec(tmp_path, parent)))
        assert "child.yml:4:" in caught.value.message and "source.parent" in caught.value.message
        return str(caught.value)

    assert "no spec 'base' in the catalog" in error("base@stable")
    build = fabricate(catalog, tmp_path / "out")
    assert "spec base has no channel 'stable'" in error("base@stable")
    assert "promote base BUILD --channel stable" in error("base@stable")
    assert "no build '20991231'" in error("base@20991231")
    other = fabricate(catalog, tmp_path / "out", spec="other")
    assert f"base@{other} is build {other}, a build of other, not of base" in error(f"base@{other}")
    assert "has no target 'nope'" in error(f"base/nope@{build}")


def test_a_revoked_pruned_or_failed_parent_is_refused(catalog, tmp_path):
    out = tmp_path / "out"
    failed = fabricate(catalog, out, status="failed")
    revoked = fabricate(catalog, out)
    catalog.revoke(revoked, "CVE-2026-1234 in openssl", "ops")
    pruned = fabricate(catalog, out)
    catalog.mark_pruned(pruned)
    for build, why in (
        (failed, "which failed: only a succeeded build can be a parent"),
        (revoked, "which was revoked (CVE-2026-1234 in openssl): a revoked build can't be a parent"),
        (pruned, "which was pruned on"),
    ):
        point(catalog, "base", "stable", build)
        with pytest.raises(SpecError) as caught:
            resolve_parents(catalog, load_spec(child_spec(tmp_path, "base@stable")))
        assert f"base@stable is build {build}, {why}" in str(caught.value)


def test_a_missing_image_file_or_one_on_another_host_is_refused(catalog, tmp_path):
    build = fabricate(catalog, tmp_path / "out")
    point(catalog, "base", "stable", build)
    with catalog._transaction("move the file to another host") as session:
        from imgpipe.catalog.models import Artifact

        for row in session.query(Artifact).all():
            row.host = "builder-2"
    with pytest.raises(SpecError) as caught:
        resolve_parents(catalog, load_spec(child_spec(tmp_path, "base@stable")))
    assert "whose image file base-local.qcow2 is on host builder-2, not on this host" in caught.value.message
    assert caught.value.hint == "bake the child on builder-2"
    with catalog._transaction("and back") as session:
        for row in session.query(Artifact).all():
            row.host = None
    (tmp_path / "out" / "base" / build / "base-local.qcow2").unlink()
    with pytest.raises(
        SpecError, match=r"whose image file .*base-local.qcow2 is missing \(pruned or moved\?\)"
    ):
        resolve_parents(catalog, load_spec(child_spec(tmp_path, "base@stable")))


def test_several_targets_of_the_kind_need_a_target_in_the_reference(catalog, tmp_path):
    build = fabricate(catalog, tmp_path / "out", targets={"small": "file", "large": "file"})
    point(catalog, "base", "stable", build)
    with pytest.raises(SpecError) as caught:
        resolve_parents(catalog, load_spec(child_spec(tmp_path, "base@stable")))
    assert "base@stable is ambiguous" in caught.value.message and "(large, small)" in caught.value.message
    assert "base/TARGET@stable" in str(caught.value.hint)
    named = resolve_parents(catalog, load_spec(child_spec(tmp_path, "base/large@stable", name="named")))
    assert named["local"].target == "large" and named["local"].path.endswith("base-large.qcow2")


def test_an_aws_target_starts_from_the_parents_ami_in_its_region(catalog, tmp_path):
    build = fabricate(catalog, tmp_path / "out", targets={"local": "file", "ec2": "ami:us-east-1,eu-west-1"})
    point(catalog, "base", "stable", build)
    targets = "  local: {builder: libvirt}\n  ec2: {builder: aws, aws: {region: eu-west-1}}\n"
    loaded = load_spec(child_spec(tmp_path, "base@stable", targets=targets))
    resolved = with_parents(catalog, loaded, region_of=lambda settings: settings.aws.region)
    assert resolved.parents["ec2"].image_id == f"ami-{1:017x}" and resolved.parents["ec2"].target == "ec2"
    assert resolved.targets["ec2"].source_ami == f"ami-{1:017x}"  # type: ignore[attr-defined]
    assert resolved.parents["local"].target == "local"
    assert with_parents(catalog, resolved) is resolved  # resolved once
    with pytest.raises(SpecError, match=r"has no AMI in ap-south-1 \(only in eu-west-1, us-east-1\)"):
        with_parents(catalog, loaded, region_of=lambda settings: "ap-south-1")


def test_the_child_fingerprint_moves_with_the_parent_channel(catalog, tmp_path):
    from imgpipe.fingerprint import explain
    from imgpipe.history import fingerprint_of

    out = tmp_path / "out"
    first = fabricate(catalog, out)
    point(catalog, "base", "stable", first)
    loaded = load_spec(child_spec(tmp_path, "base@stable"))
    before = fingerprint_of(with_parents(catalog, loaded), "local", b"k")
    assert before.parts["source"] == {"kind": "parent", "build_id": first, "target": "local"}
    assert "stable" not in str(before.parts["source"])  # the build, never the channel's name
    same = fingerprint_of(with_parents(catalog, loaded), "local", b"k")
    assert same.digest == before.digest
    second = fabricate(catalog, out)
    point(catalog, "base", "stable", second)
    after = fingerprint_of(with_parents(catalog, loaded), "local", b"k")
    assert after.digest != before.digest
    assert explain(before.parts, after.parts) == [f"parent base@stable is now build {second} (was {first})"]
    with pytest.raises(ValueError, match="resolve the spec's parent first"):
        fingerprint_of(loaded, "local", b"k")  # never silently the default bootstrap source


def test_status_reports_a_child_changed_when_its_parent_channel_moved(catalog, tmp_path):
    from imgpipe.fingerprint import publish_fingerprint
    from imgpipe.history import fingerprint_of, target_status

    out = tmp_path / "out"
    first = fabricate(catalog, out)
    point(catalog, "base", "stable", first)
    loaded = with_parents(catalog, load_spec(child_spec(tmp_path, "base@stable")))
    key = catalog.hmac_key()
    fp = fingerprint_of(loaded, "local", key)
    child = fabricate(catalog, out, spec="child", parents={"local": (first, "local", "base@stable")})
    with catalog._transaction("fix the fingerprint") as session:  # as BakeRecorder records it
        from imgpipe.catalog.models import TargetBuild

        row = session.get(TargetBuild, (child, "local"))
        row.fingerprint, row.fingerprint_parts = fp.digest, fp.parts
        row.publish_fingerprint = publish_fingerprint(loaded, "local")
    unresolved = load_spec(child_spec(tmp_path, "base@stable"))
    assert target_status(catalog, unresolved, "local", key).up_to_date
    point(catalog, "base", "stable", fabricate(catalog, out))
    status = target_status(catalog, unresolved, "local", key)
    assert not status.up_to_date and status.changes[0].startswith("parent base@stable is now build ")


def test_the_chain_of_a_build_follows_each_parent(catalog, tmp_path):
    out = tmp_path / "out"
    root = fabricate(catalog, out, spec="os")
    base = fabricate(catalog, out, spec="base", parents={"local": (root, "local", "os@stable")})
    child = fabricate(catalog, out, spec="child", parents={"local": (base, "local", "base@latest")})
    catalog.revoke(root, "bad", "ops")
    target = catalog.get(child).target("local")
    assert target.parent_build_id == base
    assert [(c["ref"], c["build_id"], c["spec"], c["status"]) for c in chain(catalog, target)] == [
        ("base@latest", base, "base", "succeeded"),
        ("os@stable", root, "os", "revoked"),
    ]
    assert [b.id for b in catalog.children(base)] == [child]


# -- nightly: parents first, cycles located ----------------------------------------------


def test_build_order_puts_parents_first_and_finds_cycles():
    order, cycles = build_order({"app": "base", "base": "os", "os": None, "tool": "elsewhere"})
    assert order.index("os") < order.index("base") < order.index("app") and "tool" in order
    order, cycles = build_order({"a": "b", "b": "a", "c": "a", "d": None, "self": "self"})
    assert order == ["d"]
    assert sorted(map(sorted, cycles)) == [["a", "b"], ["self"]]


def _nightly_specs(tmp_path: Path, parents: dict[str, str | None]):
    from imgpipe.nightly import SpecRun

    loaded = []
    for name, parent in parents.items():
        source = f"source:\n  parent: {parent}@latest\n" if parent else ""
        path = write(
            tmp_path / f"{name}.yml",
            f"imgpipe: 1\nname: {name}\n{source}targets:\n  local: {{builder: libvirt}}\n",
        )
        loaded.append((SpecRun(str(path), name), load_spec(path)))
    return loaded


def test_a_cycle_of_parents_is_a_located_error_and_its_specs_fail(tmp_path):
    from imgpipe.nightly import Result, _without_cycles

    loaded = _nightly_specs(tmp_path, {"a": "b", "b": "a", "c": "a", "d": None})
    kept = _without_cycles(loaded)
    assert [spec.spec.name for _, spec in kept] == ["d"]
    runs = {run.name: run for run, _ in loaded}
    for name in ("a", "b"):
        assert runs[name].result is Result.FAILED
        error = runs[name].errors["spec"]
        assert f"{name}.yml:4:" in error and "source.parent: a cycle of parents:" in error, error
    assert runs["c"].result is Result.SKIPPED and "whose parents form a cycle" in runs["c"].why


def test_nightly_starts_a_child_after_its_parent_and_independent_specs_at_once(tmp_path):
    from imgpipe.nightly import Result, _bake_parents_first

    loaded = _nightly_specs(
        tmp_path, {"app": "base", "base": None, "other": None, "broken": None, "kid": "broken"}
    )
    events: list[str] = []
    lock = threading.Lock()

    def bake(run, spec) -> None:
        with lock:
            events.append(f"start {spec.spec.name}")
        time.sleep(0.5)
        run.result = Result.FAILED if spec.spec.name == "broken" else Result.SUCCEEDED
        with lock:
            events.append(f"end {spec.spec.name}")

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        _bake_parents_first(
            loaded, lambda run, spec: pool.submit(bake, run, spec), futures, threading.Event()
        )
    assert all(f.done() for f in futures) and len(futures) == 4
    assert events.index("end base") < events.index("start app")
    # base, other and broken started together, before any ended
    assert set(events[:3]) == {"start base", "start other", "start broken"}
    runs = {run.name: run for run, _ in loaded}
    assert "start kid" not in events and runs["kid"].result is Result.SKIPPED
    assert runs["kid"].why == "skipped: the bake of its parent spec broken failed"
