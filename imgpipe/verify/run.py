"""One fresh boot of the captured image: boot it (the builder knows how), run the built-in
checks, then the spec's testinfra files and plays; record everything, and fail the target
on any failure (the test VM stays for `--on-error abort`, else the journal removes it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from imgpipe.core.cancel import checkpoint
from imgpipe.errors import VerifyError
from imgpipe.spec.model import BuiltinChecks
from imgpipe.verify.identity import BuildIdentity, Outcome, evaluate, probe
from imgpipe.verify.imagetests import TestFailure, run_playbooks, run_testinfra

if TYPE_CHECKING:
    from imgpipe.core.artifact import Artifact
    from imgpipe.core.context import TargetContext


def test_fresh_boot(
    ctx: TargetContext, builder: Any, artifact: Artifact, build: BuildIdentity
) -> dict[str, Any]:
    """The manifest's record of the verification; raises VerifyError if it failed."""
    spec = ctx.loaded.spec
    report_dir = ctx.log_dir / "verify"
    report_dir.mkdir(parents=True, exist_ok=True)
    ctx.emit.message("booting the captured image to test it")
    endpoint = builder.boot_image(artifact)
    checkpoint(ctx.cancel)
    checks = evaluate(build, probe(endpoint), {step.value for step in spec.seal.skip})
    (report_dir / "checks.json").write_text(json.dumps([c.record() for c in checks], indent=1) + "\n")
    failed_checks = [c for c in checks if c.outcome is Outcome.failed]
    for check in failed_checks:
        ctx.emit.message(f"built-in check {check.name} failed: {check.detail}")
    checkpoint(ctx.cancel)
    failures: list[TestFailure] = []
    testinfra = [ctx.loaded.directory / f for f in spec.verify.testinfra]
    if testinfra:
        failures += run_testinfra(ctx, endpoint, testinfra, report_dir)
        checkpoint(ctx.cancel)
    playbooks = [ctx.loaded.directory / f for f in spec.verify.playbooks]
    if playbooks:
        failures += run_playbooks(ctx, endpoint, playbooks, report_dir)
        checkpoint(ctx.cancel)
    record = {
        "verified": True,
        "ok": not failures and (not failed_checks or spec.verify.builtin_checks is BuiltinChecks.warn),
        "checks": {c.name: c.outcome.value for c in checks},
        "failed_checks": [c.record() for c in failed_checks],
        "tests": {"testinfra": list(spec.verify.testinfra), "playbooks": list(spec.verify.playbooks)},
        "failures": [str(f) for f in failures],
        "report": str(report_dir),
    }
    if not record["ok"]:
        problems = [f"test {f}" for f in failures]
        if spec.verify.builtin_checks is BuiltinChecks.fail:
            problems += [f"built-in check {c.name}: {c.detail}" for c in failed_checks]
        raise VerifyError(
            f"the captured image failed its tests on a fresh boot ({len(problems)} failure"
            f"{'s' * (len(problems) > 1)}):\n  " + "\n  ".join(problems),
            hint=f"reports: {report_dir}"
            + (
                "; a skipped or disabled seal leaves the build VM's identity in the image"
                if failed_checks
                else ""
            ),
        )
    discard = getattr(builder, "discard_image_boot", None)
    if discard is not None:
        discard()
    return record
