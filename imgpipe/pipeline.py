"""bake: for each target, in parallel, a script of verb-named steps over one
TargetContext. Every temporary resource is journaled when created and removed
on success, failure, Ctrl-C or SIGTERM; a failed target never leaves an image."""

from __future__ import annotations

import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from imgpipe import __version__
from imgpipe.builders import builder_class
from imgpipe.builders.base import Builder
from imgpipe.builders.sshkeys import BUILD_USER, key_fingerprint
from imgpipe.capture import finalize
from imgpipe.core import Artifact, ImageFile, Rollback, SSHEndpoint, TargetContext, checkpoint, new_build_id
from imgpipe.errors import BuildError, ImgpipeError, Interrupted, SpecError, as_imgpipe_error, run_command
from imgpipe.events import Emitter, Event, EventSink
from imgpipe.journal import Resources, remove_path
from imgpipe.manifest import TargetRecord, write_manifest
from imgpipe.paths import cache_dir, state_dir
from imgpipe.redact import Redactor
from imgpipe.spec.load import LoadedSpec
from imgpipe.spec.variables import ResolvedVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from imgpipe.provision import AnsibleSession
    from imgpipe.reuse import Reuse
    from imgpipe.sbom import Package
    from imgpipe.verify.identity import BuildIdentity


class OnError(StrEnum):
    cleanup = "cleanup"
    abort = "abort"
    ask = "ask"  # on a terminal: clean up, keep the VM, or retry the failed stage (imgpipe.ask)


@dataclass(frozen=True)
class BakeOptions:
    output: Path
    targets: tuple[str, ...]
    variables: dict[str, ResolvedVar]
    on_error: OnError = OnError.cleanup
    parallel: int | None = None  # targets at once; default: all
    # called before a target publishes anything (its image made final): raises to stop it,
    # e.g. imgpipe.lease.SpecLease.check when another runner took the spec
    before_publish: Callable[[], None] | None = None
    # --on-error ask: (target, stage, redacted message, can_retry, cancel) -> imgpipe.ask.Choice
    ask: Callable[[str, str, str, bool, threading.Event], str] | None = None


@dataclass
class BakeResult:
    build_id: str
    output_dir: Path
    records: list[TargetRecord] = field(default_factory=list)
    errors: dict[str, ImgpipeError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class RedactingSink:
    def __init__(self, sink: EventSink, redact: Redactor) -> None:
        self.sink, self.redact = sink, redact

    def emit(self, event: Event) -> None:
        self.sink.emit(Event(event.target, event.kind, self.redact.data(event.data), event.time))


def _redacted(err: ImgpipeError, redact: Redactor) -> ImgpipeError:
    err.message = redact.text(err.message)
    err.hint = redact.text(err.hint) if err.hint else err.hint
    err.args = (err.message,)
    return err


def _checkpoint(ctx: TargetContext) -> None:
    checkpoint(ctx.cancel)


def _extravars(ctx: TargetContext, variables: dict[str, ResolvedVar]) -> dict[str, Any]:
    return {
        **{name: v.value for name, v in variables.items()},
        # Packer's packer_build_name / packer_builder_type, for playbooks that branch on them
        "imgpipe_build": {
            "id": ctx.build_id,
            "target": ctx.target,
            "spec": ctx.loaded.spec.name,
            "builder": getattr(ctx.settings, "builder", ""),
        },
    }


def cloud_datasources(loaded: LoadedSpec, target: str) -> list[str]:
    """cloud-init datasources the target's image needs for the clouds its publishers
    put it in (each publisher class names them), in run order, without repeats."""
    from imgpipe.publish.base import publisher_class

    needed = [
        ds
        for step in loaded.steps_for(target)
        for ds in getattr(publisher_class(step.publisher), "cloud_init_datasources", ())
    ]
    return list(dict.fromkeys(needed))


class TargetBake:
    """One target's build. Steps run in order; resources unwind in reverse."""

    def __init__(self, ctx: TargetContext, builder: Builder, options: BakeOptions, out: Path) -> None:
        self.ctx, self.builder, self.options, self.out = ctx, builder, options, out
        self.record = TargetRecord(ctx.target, builder.builder_type, False, int(time.time()))
        self._session: AnsibleSession | None = None
        self.identity: BuildIdentity | None = None
        self.packages: list[Package] | None = None
        self.keep_on_failure = options.on_error == OnError.abort  # --on-error ask may set it
        self.failed_stage = "the build"  # where --on-error ask says it failed
        self.answered = False  # --on-error ask asks once per target (a retry asks again)

    def ansible(self, endpoint: SSHEndpoint) -> AnsibleSession:
        """The target's Ansible session (private data dir, control sockets, installed
        requirements), made when something first runs: a bake with no plays makes none."""
        if self._session is None:
            from imgpipe.provision import AnsibleSession

            self._session = AnsibleSession(self.ctx, endpoint)
        return self._session

    def run(self) -> None:
        self._guarded(self._build)

    def republish(self, reuse: Reuse) -> None:
        """Only publish settings changed since a good build: run the publishers again on its
        artifact (an image file is linked into this build's output), booting nothing."""

        def steps() -> None:
            with self.ctx.emit.stage("source"):
                self.record.source = {"kind": "reused", "build_id": reuse.build_id}
                artifact = reuse.artifact(self.ctx, self.out)
                self.packages = reuse.packages()
            self.record.verify = {"verified": True, "reason": f"tested in build {reuse.build_id}"}
            self.finish(self.publish(artifact))

        self._guarded(steps)

    def _guarded(self, steps: Callable[[], None]) -> None:
        """Run the target's steps: on failure or interrupt undo what publishing made (and
        keep the VMs for --on-error abort); always remove the temporary resources."""
        ctx, emit = self.ctx, self.ctx.emit
        start = time.monotonic()
        try:
            _checkpoint(ctx)  # a target queued behind --parallel may start after Ctrl-C
            steps()
        except BaseException as exc:
            self.record.error = ctx.redact.text(str(exc) if isinstance(exc, ImgpipeError) else repr(exc))
            for failure in ctx.undo.run():  # what could not be undone stays in the journal
                emit("error", message=f"could not undo {failure}")
            # bad input (a SpecError, found before the VM exists) leaves nothing to debug
            debuggable = not isinstance(exc, Interrupted | KeyboardInterrupt | SpecError)
            self._asked(exc, can_retry=False)
            if self.keep_on_failure and debuggable:
                ctx.resources.keep()
                emit("kept", hint=self.builder.debug_hint())
            raise
        finally:
            with emit.stage("cleanup"):
                for failure in ctx.resources.close():
                    emit("error", message=str(failure))
            self.record.timings = {**emit.timings, "total": round(time.monotonic() - start, 3)}

    def _asked(self, exc: BaseException, can_retry: bool) -> str | None:
        """--on-error ask: what the person at the terminal chose (None: nothing to ask, or
        they answered already). `abort` keeps the VM as --on-error abort does."""
        if self.answered or self.options.on_error != OnError.ask or self.options.ask is None:
            return None
        if isinstance(exc, Interrupted | KeyboardInterrupt | SpecError):
            return None
        message = self.ctx.redact.text(str(exc))
        choice = str(
            self.options.ask(self.ctx.target, self.failed_stage, message, can_retry, self.ctx.cancel)
        )
        self.answered = choice != "retry"
        self.keep_on_failure = self.keep_on_failure or choice == "abort"
        return choice

    def _retryable(self, stage: str, step: Callable[[], Any]) -> Any:
        """Run a stage that can run again on the same VM (provisioning, capture): with
        --on-error ask, its failure asks, and `retry` runs it again."""
        self.failed_stage = stage
        while True:
            try:
                return step()
            except BuildError as exc:  # ProvisionError and VerifyError are BuildErrors
                if self._asked(exc, can_retry=True) != "retry":
                    raise
                self.ctx.emit.message(f"retrying {stage}")

    def _build(self) -> None:
        ctx, emit = self.ctx, self.ctx.emit
        with emit.stage("source"):
            self.record.source = self.builder.prepare()
            parent = ctx.loaded.parents.get(ctx.target)
            if parent is not None:  # lineage: the image it starts from is a build of imgpipe's
                self.record.source = {**self.record.source, "parent": parent.record()}
        _checkpoint(ctx)
        with emit.stage("launch"):
            endpoint = self.builder.launch()
        _checkpoint(ctx)
        self.record.build_vm = {
            "host_key": endpoint.host_key_fingerprint,
            "build_key": key_fingerprint(endpoint.authorized_key),
        }
        self._retryable("provisioning", lambda: self.provision(endpoint))
        self.failed_stage = "the build"
        self.close_build_network()
        self.remember_build_vm(endpoint)
        self.seal(endpoint)
        with emit.stage("shutdown"):
            self.builder.stop()
        _checkpoint(ctx)
        with emit.stage("capture"):
            name = f"{ctx.loaded.spec.name}-{ctx.target}"
            artifact = self._retryable("capture", lambda: self.builder.capture(self.out, name))
        self.failed_stage = "the build"
        _checkpoint(ctx)
        self.verify(artifact)
        self.finish(self.publish(artifact))

    def provision(self, endpoint: SSHEndpoint) -> None:
        from imgpipe.provision import provision_playbook

        plays = provision_playbook(self.ctx.loaded, self.ctx.target)
        with self.ctx.emit.stage("provision"):
            if plays:
                variables = _extravars(self.ctx, self.options.variables)
                self.ansible(endpoint).run("provision", plays, variables, team="all")
        _checkpoint(self.ctx)

    def close_build_network(self) -> None:
        """What a builder opened only for provisioning (the build VM's package proxy) goes
        before the seal, so no image carries it. Optional in the builder protocol."""
        finish = getattr(self.builder, "finish_provisioning", None)
        if finish is not None:
            finish()
        _checkpoint(self.ctx)

    def remember_build_vm(self, endpoint: SSHEndpoint) -> None:
        """Read before the seal: what the build VM was (machine-id, hostname, cloud-init
        instance: a fresh boot of the image must not be it), and its installed packages
        (the image's SBOM). A builder that runs no VM (a test fake) has neither."""
        if not (self.ctx.loaded.spec.seal.enabled or hasattr(self.builder, "boot_image")):
            return
        from imgpipe.sbom import DPKG_QUERY, parse_dpkg_query
        from imgpipe.verify.identity import read_build_identity

        self.identity = read_build_identity(endpoint)
        self.record.build_vm["machine_id"] = self.identity.machine_id
        listing = run_command([*endpoint.ssh_argv(), shlex.join(DPKG_QUERY)], timeout=120)
        self.packages = parse_dpkg_query(listing)

    def _boots_image(self) -> bool:
        return self.ctx.loaded.spec.verify.enabled and hasattr(self.builder, "boot_image")

    def seal(self, endpoint: SSHEndpoint) -> None:
        from imgpipe.provision import seal_plays

        seal = self.ctx.loaded.spec.seal
        with self.ctx.emit.stage("seal"):
            if seal.enabled:
                self.ansible(endpoint).run(
                    "seal",
                    seal_plays(self.ctx),
                    {
                        "imgpipe_seal_skip": [s.value for s in seal.skip],
                        "imgpipe_build_authorized_key": endpoint.authorized_key,
                        # deleted by the seal only if it is imgpipe's own temporary user
                        "imgpipe_build_user": endpoint.user if endpoint.user == BUILD_USER else "",
                        "imgpipe_build_host_keys": [key.split()[1] for key in endpoint.host_keys],
                        "imgpipe_seal_datasources": cloud_datasources(self.ctx.loaded, self.ctx.target),
                    },
                )
        _checkpoint(self.ctx)

    def verify(self, artifact: Artifact) -> None:
        """Boot the captured image afresh and test it before anything is published; a
        failure fails the target (nothing published, no image) and keeps the report."""
        from imgpipe.verify.run import test_fresh_boot

        spec = self.ctx.loaded.spec.verify
        if not spec.enabled:
            self.record.verify = {"verified": False, "reason": "verify.enabled is false"}
            return
        if not self._boots_image() or self.identity is None:
            reason = f"the {self.builder.builder_type} builder cannot boot its image"
            self.record.verify = {"verified": False, "reason": reason}
            self.ctx.emit.message(f"image not verified: {reason}")
            return
        with self.ctx.emit.stage("verify"):
            self.record.verify = test_fresh_boot(self.ctx, self.builder, artifact, self.identity)
        _checkpoint(self.ctx)

    def publish(self, artifact: Artifact) -> Artifact:
        """Run the publish steps that start from this target's artifact, in the spec's
        order, before anything is final: a failed publish fails the target and leaves no
        image. Returns the target's artifact, as its `publish:` shorthand refined it."""
        from imgpipe.publish.base import publisher_class

        if self.options.before_publish is not None:
            self.options.before_publish()
        made: dict[str, Artifact] = {self.ctx.target: artifact}
        for step in self.ctx.loaded.steps_for(self.ctx.target):
            publisher = publisher_class(step.publisher)(step.name, step.settings, self.ctx)
            with self.ctx.emit.stage(f"publish:{step.name}"):
                publication = publisher.publish(made[step.source])
            _checkpoint(self.ctx)
            if publication.artifact is not None:
                made[step.source if step.refines else step.name] = publication.artifact
            if not step.refines:
                self.record.published.append(publication)
            elif step.source != self.ctx.target:  # a publisher's shorthand: its record shows the result
                self.record.published = [
                    replace(p, artifact_id=publication.artifact_id, data=publication.data)
                    if p.publisher == step.source
                    else p
                    for p in self.record.published
                ]
        return made[self.ctx.target]

    def write_sbom(self) -> tuple[str, str]:
        """The image's CycloneDX SBOM beside it: (sha256, file name)."""
        from imgpipe.sbom import write_sbom

        assert self.packages is not None
        name = f"{self.ctx.loaded.spec.name}-{self.ctx.target}.cdx.json"
        digest = write_sbom(
            self.out / name,
            self.packages,
            image_name=f"{self.ctx.loaded.spec.name}-{self.ctx.target}",
            spec_name=self.ctx.loaded.spec.name,
            build_id=self.ctx.build_id,
        )
        self.record.sbom = {"file": name, "sha256": digest, "packages": len(self.packages)}
        return digest, name

    def finish(self, artifact: Artifact) -> None:
        """The target succeeded: the image becomes the product (a final file name, or
        cloud images released from the journal so cleanup no longer removes them)."""
        sums: list[tuple[str, str]] = []
        if isinstance(artifact, ImageFile):
            sums.append((artifact.sha256, artifact.name))
            self.record.files = [{"name": artifact.name, "size": artifact.size, "sha256": artifact.sha256}]
        if self.packages is not None:
            sums.append(self.write_sbom())
        if sums:
            with open(self.out / "SHA256SUMS", "a") as sha256sums:
                sha256sums.writelines(f"{digest}  {name}\n" for digest, name in sums)
        if isinstance(artifact, ImageFile):
            finalize(artifact.partial, self.out / artifact.name)
        self.ctx.undo.commit()
        self.record.ok = True
        self.record.artifact_id = artifact.artifact_id
        self.record.data = artifact.manifest_data()


def _inputs(loaded: LoadedSpec) -> dict[str, Any]:
    from ansible.release import __version__ as ansible_version

    from imgpipe.roles import resolve_roles

    return {
        "version": __version__,
        "ansible_core": ansible_version,
        "roles": [
            {"name": r.name, "path": str(r.path) if r.path else None, "sha256": r.sha256}
            for r in resolve_roles(loaded)
        ],
    }


class BakeRecorder(Protocol):
    """Who remembers the bake as it goes (the catalog, imgpipe.history)."""

    def started(self, build_id: str, out: Path, targets: list[str]) -> None: ...
    def target_finished(self, record: TargetRecord, interrupted: bool) -> None: ...
    def finished(self, status: str) -> None: ...


def bake(
    loaded: LoadedSpec,
    options: BakeOptions,
    sink: EventSink,
    cancel: threading.Event | None = None,
    recorder: BakeRecorder | None = None,
    reuse: Mapping[str, Reuse] | None = None,
) -> BakeResult:
    """Bake every selected target in parallel. Never raises for a target's
    failure: the result carries per-target errors. Raises Interrupted if cancelled."""
    cancel = cancel or threading.Event()
    redact = Redactor(v.value for v in options.variables.values() if v.sensitive)
    sink = RedactingSink(sink, redact) if redact else sink
    build_id = new_build_id()
    out = options.output / loaded.spec.name / build_id
    out.mkdir(parents=True, exist_ok=True)
    result = BakeResult(build_id, out)
    if recorder is not None:  # before anything temporary exists: a refusal leaves nothing
        recorder.started(build_id, out, list(options.targets))
    bakes = [
        _target_bake(loaded, options, sink, cancel, build_id, name, out, redact) for name in options.targets
    ]

    def run_one(tb: TargetBake) -> None:
        try:
            if reuse and tb.ctx.target in reuse:
                tb.republish(reuse[tb.ctx.target])
            else:
                tb.run()
            tb.ctx.emit("target_finished", ok=True)
        except BaseException as exc:  # noqa: BLE001 - recorded per target, reported by the CLI
            err = as_imgpipe_error(exc)
            result.errors[tb.ctx.target] = _redacted(err, redact)
            tb.ctx.emit("target_finished", ok=False, error=str(err))
        if recorder is not None:
            try:
                interrupted = isinstance(result.errors.get(tb.ctx.target), Interrupted)
                recorder.target_finished(tb.record, interrupted)
            except Exception as exc:  # noqa: BLE001 - the build happened; not remembering it fails it
                result.errors.setdefault(tb.ctx.target, _redacted(as_imgpipe_error(exc), redact))

    with ThreadPoolExecutor(max_workers=options.parallel or max(1, len(bakes))) as pool:
        futures = [pool.submit(run_one, tb) for tb in bakes]
        try:
            while not all(f.done() for f in futures):
                time.sleep(0.2)
        except KeyboardInterrupt:
            cancel.set()  # every target shares it: Ansible runs cancel, VM waits stop
            for f in futures:
                f.result()
            if recorder is not None:
                recorder.finished("interrupted")
            raise Interrupted("interrupted") from None
    result.records = [tb.record for tb in bakes]
    spec_record = {"name": loaded.spec.name, "path": str(loaded.path)}
    write_manifest(
        out / "manifest.json",
        run_uuid=build_id,
        spec=spec_record,
        targets=result.records,
        inputs=_inputs(loaded),
    )
    if recorder is not None:
        interrupted = any(isinstance(e, Interrupted) for e in result.errors.values())
        recorder.finished("succeeded" if result.ok else "interrupted" if interrupted else "failed")
    return result


def _target_bake(
    loaded: LoadedSpec,
    options: BakeOptions,
    sink: EventSink,
    cancel: threading.Event,
    build_id: str,
    name: str,
    out: Path,
    redact: Redactor,
) -> TargetBake:
    resources = Resources(state_dir() / "journal", build_id, name)
    workdir = cache_dir() / "work" / f"{build_id}-{name}"
    resources.track("workdir", remove_path, path=str(workdir))
    workdir.mkdir(parents=True)
    workdir.chmod(0o700)
    log_dir = out / "logs" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = TargetContext(
        build_id=build_id,
        target=name,
        loaded=loaded,
        settings=loaded.targets[name],
        workdir=workdir,
        log_dir=log_dir,
        resources=resources,
        emit=Emitter(sink, name),
        cancel=cancel,
        redact=redact,
        undo=Rollback(resources),
    )
    builder_type: Any = builder_class(loaded.targets[name].builder)  # type: ignore[attr-defined]
    return TargetBake(ctx, builder_type(ctx), options, out)
