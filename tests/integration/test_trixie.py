"""examples/web.yml baked on the Debian suite it does not name (the other one imgpipe.sources
.distros lists), so the integration tier bakes the example on both: a base bootstrapped from
that suite's own packages (kernel, GRUB, cloud-init), provisioned, sealed, captured, and
verified by the example's own testinfra tests on a fresh boot of the captured image."""

import json
import re
import shutil

import pytest
import yaml

from imgpipe.sources.distros import get_suite, suite_names
from tests.conftest import REPO, write
from tests.integration.conftest import NOTHING, build_dir_from, leftovers, run_imgpipe

EXAMPLE = REPO / "examples" / "web.yml"


def _example_suite() -> str:
    return yaml.safe_load(EXAMPLE.read_text())["source"]["bootstrap"]["suite"]


OTHER = [s for s in suite_names("debian") if s != _example_suite()]


@pytest.fixture(scope="module")
def other_suite_build(imgpipe_env, tmp_path_factory):
    """The example, its suite switched, beside a copy of its tests (verify paths are
    relative to the spec; its nginx role is one imgpipe ships)."""
    (suite,) = OTHER
    tmp = tmp_path_factory.mktemp(f"web-{suite}")
    example = EXAMPLE.read_text()
    named = f"bootstrap: {{distro: debian, suite: {_example_suite()}}}"
    assert example.count(named) == 1, "the example names its suite another way: update this test"
    spec = write(tmp / "web.yml", example.replace(named, f"bootstrap: {{distro: debian, suite: {suite}}}"))
    shutil.copytree(REPO / "examples" / "tests", tmp / "tests")
    proc = run_imgpipe(imgpipe_env, "bake", str(spec), "--output", str(tmp / "out"))
    return {"suite": get_suite("debian", suite), "proc": proc, "spec": spec, "env": imgpipe_env}


def test_the_example_bakes_and_verifies_on_the_other_suite(other_suite_build):
    proc, suite = other_suite_build["proc"], other_suite_build["suite"]
    assert proc.returncode == 0, f"bake on {suite.name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    build = build_dir_from(proc.stdout)
    target = json.loads((build / "manifest.json").read_text())["imgpipe"]["targets"]["local"]
    assert target["ok"] and target["source"]["suite"] == suite.name
    assert target["verify"]["ok"] and set(target["verify"]["checks"].values()) == {"passed"}
    assert "2 passed" in (build / "logs" / "local" / "verify" / "testinfra.log").read_text()

    # the suite's own packages: its base-files (13.x on trixie) and its own kernel
    sbom = json.loads((build / target["sbom"]["file"]).read_text())
    versions = {c["name"]: c["version"] for c in sbom["components"]}
    assert versions["base-files"].split(".")[0] == suite.version, versions["base-files"]
    kernels = [
        n
        for n in versions
        if re.fullmatch(rf"linux-image-{re.escape(suite.kernel_series)}\..*-cloud-amd64", n)
    ]
    assert kernels, sorted(n for n in versions if n.startswith("linux-image"))
    assert {suite.kernel, "cloud-init", "nginx-light"} <= set(versions)
    assert "grub-common" not in versions  # the suite's GRUB made core.img and was purged
    assert leftovers(other_suite_build["env"], build.name) == NOTHING


def test_the_base_sidecar_records_the_suite_s_sources(other_suite_build):
    """The cached base says which suites its apt lists came from, with their Release dates
    (what nightly's freshness check compares): the release, -updates and -security."""
    from imgpipe.sources.bootstrap import recipe_key
    from imgpipe.sources.identity import bootstrap_recipe, cached_base_path
    from imgpipe.spec import load_spec

    assert other_suite_build["proc"].returncode == 0, other_suite_build["proc"].stderr[-2000:]
    suite = other_suite_build["suite"]
    recipe = bootstrap_recipe(load_spec(other_suite_build["spec"]))
    assert recipe.suite == suite.name
    base = cached_base_path(recipe, recipe_key(recipe))
    sidecar = json.loads(base.with_suffix(".json").read_text())
    assert [e["suite"] for e in sidecar["apt_sources"]] == list(suite.suites())
    assert all(e["date"] for e in sidecar["apt_sources"]), sidecar["apt_sources"]
    packages = sidecar["built_from"]["packages"]
    assert packages["base-files"].split(".")[0] == suite.version
