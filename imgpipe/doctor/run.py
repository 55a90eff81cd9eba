"""Which checks a doctor run makes, and running them: every check in its own thread with a
deadline, an unexpected exception or a hang turned into that check's FAIL line.

Without specs every host check runs as if for the default spec (a libvirt target on the
default URI, bootstrapped). With specs, the checks follow what they need: each libvirt
URI they name, mmdebstrap only for a bootstrapped local target, AWS credentials only for
a target or publisher with AWS settings; host checks that no given spec needs are
downgraded from fail to warn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.doctor import checks, kvm
from imgpipe.doctor.checks import Check, GiB, Status

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSettings
    from imgpipe.spec.load import LoadedSpec


@dataclass(frozen=True)
class Host:
    """Where the checks look. The defaults are this host; tests pass a broken one."""

    kvm: Path = checks.KVM
    cpuinfo: Path = checks.CPUINFO
    path: str | None = None  # PATH to find programs on (None: $PATH)
    cache_dir: Path | None = None  # None: imgpipe.paths.cache_dir()
    disk_fail_below: int = 5 * GiB
    disk_warn_below: int = 15 * GiB
    libvirtd_started_at: Callable[[], tuple[int, float] | None] = checks.libvirtd_started_at


@dataclass
class Needs:
    """What the given specs need from this host."""

    local: bool = False  # a target builds in a local VM
    bootstrap: bool = False  # ... from source.bootstrap (mmdebstrap)
    uris: dict[str, None] = field(default_factory=dict)  # libvirt URIs, in order
    accelerators: set[str] = field(default_factory=set)
    aws: dict[str, tuple[AwsSettings, list[str]]] = field(default_factory=dict)  # by settings JSON

    @classmethod
    def default(cls) -> Needs:
        from imgpipe.builders.libvirt import LibvirtSettings

        uri = str(LibvirtSettings.model_fields["uri"].default)
        return cls(local=True, bootstrap=True, uris={uri: None})

    def add(self, loaded: LoadedSpec) -> None:
        from imgpipe.aws.session import AwsSettings
        from imgpipe.builders.libvirt import LibvirtSettings

        source = loaded.spec.source
        bootstrapped = source.image is None and source.parent is None
        spec = loaded.spec.name
        for target, settings in loaded.targets.items():
            if isinstance(settings, LibvirtSettings):
                self.local = True
                self.bootstrap |= bootstrapped
                self.uris.setdefault(settings.uri, None)
                self.accelerators.add(settings.accelerator.value)
            self._add_aws(getattr(settings, "aws", None), f"{spec} target {target}", AwsSettings)
        for step in loaded.publish_steps:
            self._add_aws(getattr(step.settings, "aws", None), f"{spec} publish {step.name}", AwsSettings)

    def _add_aws(self, settings: Any, user: str, kind: type[AwsSettings]) -> None:
        if isinstance(settings, kind):
            self.aws.setdefault(settings.model_dump_json(), (settings, []))[1].append(user)


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """False when any check says a bake would fail (warnings do not count)."""
        return all(c.status != Status.fail for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "checks": [c.to_json() for c in self.checks], "ok": self.ok}


def load_specs(specs: Sequence[Path]) -> tuple[list[Check], Needs]:
    """Each spec loaded with imgpipe's own loader (a bad one is a fail line with its located
    errors), and what the good ones need."""
    from imgpipe.errors import ImgpipeError
    from imgpipe.roles import reference_problems
    from imgpipe.spec import load_spec

    found: list[Check] = []
    needs = Needs()
    for path in specs:
        try:
            loaded = load_spec(path)
            problems = reference_problems(loaded)
        except ImgpipeError as exc:
            found.append(Check("spec", Status.fail, str(exc).replace("\n", "; "), f"imgpipe validate {path}"))
            continue
        if problems:
            detail = f"{path}: " + "; ".join(problems)
            found.append(Check("spec", Status.fail, detail, f"imgpipe validate {path}"))
            continue
        needs.add(loaded)
        count = len(loaded.spec.targets)
        found.append(Check("spec", Status.ok, f"{path}: {loaded.spec.name}, {count} target(s)"))
    return found, needs


@dataclass(frozen=True)
class Step:
    name: str  # for the FAIL line when the check itself breaks
    run: Callable[[], Check]
    needed: bool = True  # does a bake of the given specs need it? (else a fail is a warning)


def plan(needs: Needs, catalog_url: str | None, host: Host) -> list[Step]:
    """The checks to run, in the order they are shown."""
    local, boot = needs.local, needs.bootstrap
    steps = [Step("libvirtd", partial(checks.libvirtd, uri), local) for uri in needs.uris]
    if not needs.uris:  # no local target: still say whether the default URI answers
        steps = [Step("libvirtd", partial(checks.libvirtd, uri), False) for uri in Needs.default().uris]
    steps += [
        Step(str(checks.KVM), partial(kvm.kvm_device, host.kvm), local),
        Step(
            "accelerator",
            partial(kvm.accelerator, host.kvm, host.cpuinfo, frozenset(needs.accelerators)),
            local,
        ),
        Step("vm-start", partial(kvm.vm_start, host.kvm, host.libvirtd_started_at), local),
        Step(checks.QEMU_SYSTEM.name, partial(checks.program, checks.QEMU_SYSTEM, host.path), local),
        Step(checks.QEMU_IMG.name, partial(checks.program, checks.QEMU_IMG, host.path), local),
        Step(
            checks.MMDEBSTRAP.name, partial(checks.program, checks.MMDEBSTRAP, host.path, required=boot), boot
        ),
        Step("disk", partial(checks.disk_space, host.cache_dir, host.disk_fail_below, host.disk_warn_below)),
        Step("ansible", checks.ansible),
        Step("catalog", partial(checks.catalog, catalog_url)),
    ]
    for settings, users in needs.aws.values():
        name = f"aws:{settings.profile}" if settings.profile else "aws"
        steps.append(Step(name, partial(checks.aws_credentials, settings, ", ".join(users))))
    return steps


def run_doctor(
    specs: Sequence[Path] = (),
    catalog_url: str | None = None,
    *,
    host: Host | None = None,
    timeout_s: float = 60.0,
) -> Report:
    """Check this host for what a bake of `specs` (or of a default local spec) needs."""
    from imgpipe.catalog import catalog_url as resolve_url

    host = host or Host()
    spec_checks, needs = load_specs(specs)
    if not specs:
        needs = Needs.default()
    steps = plan(needs, catalog_url, host)
    url = resolve_url(catalog_url)
    results = [_scrubbed(c, url) for c in _run_all(steps, timeout_s)]
    body = [c if step.needed else _advisory(c) for c, step in zip(results, steps, strict=True)]
    return Report((*spec_checks, *body))


def _scrubbed(check: Check, url: str) -> Check:
    """No line shows the catalog's password, whatever a driver put in a message."""
    from imgpipe.catalog.url import scrub

    return replace(check, detail=scrub(check.detail, url), fix=scrub(check.fix, url))


def _advisory(check: Check) -> Check:
    if check.status != Status.fail:
        return check
    return replace(check, status=Status.warn, detail=f"{check.detail} (not needed by the given specs)")


def _run_all(steps: Sequence[Step], timeout_s: float) -> list[Check]:
    """Run the checks side by side (they wait on daemons, networks and subprocesses, not on
    the CPU). A check still running at the deadline is a FAIL; its daemon thread is left
    behind and dies with the process."""
    results: list[Check | None] = [None] * len(steps)

    def work(i: int) -> None:
        results[i] = _guarded(steps[i])

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(steps))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [
        r if r is not None else Check(steps[i].name, Status.fail, f"no answer within {timeout_s:g} s")
        for i, r in enumerate(results)
    ]


def _guarded(step: Step) -> Check:
    try:
        return step.run()
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return Check(step.name, Status.fail, f"unexpected {type(exc).__name__}: {exc}")
