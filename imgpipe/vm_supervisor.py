"""The process behind `imgpipe vm up` (`imgpipe vm serve`, in its own session): it launches
the build VM exactly as a bake does (the target's builder, the cached base, the pinned host
key, the package proxy) and then holds it until SIGTERM. It must outlive `vm up`: the VM's
package proxy is a thread of this process, and the journal names this process as the
VM's owner, so `imgpipe gc` leaves the VM alone while it lives and removes it after a
kill -9. It reads its request on stdin, reports JSON status lines on stdout (to `vm up`,
which stops listening once the VM is up) and logs to stderr."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from imgpipe.builders import builder_class
from imgpipe.core import Rollback, SSHEndpoint, TargetContext, checkpoint, new_build_id
from imgpipe.errors import as_imgpipe_error
from imgpipe.events import Emitter, Event
from imgpipe.journal import Resources, remove_path
from imgpipe.paths import cache_dir, state_dir
from imgpipe.redact import Redactor
from imgpipe.spec.load import LoadedSpec
from imgpipe.vm import Instance, VmRequest, process_start


class StatusChannel:
    """JSON lines to `vm up`. It closes its end once the VM is up: later lines go nowhere."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.open = True

    def send(self, event: str, **data: Any) -> None:
        if not self.open:
            return
        try:
            self.stream.write(json.dumps({"event": event, **data}) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.open = False


class LogSink:
    """Progress events as log lines; messages and stage starts also to `vm up` to show."""

    def __init__(self, log: IO[str], status: StatusChannel, redact: Redactor) -> None:
        self.log, self.status, self.redact = log, status, redact

    def emit(self, event: Event) -> None:
        text = self.redact.text(describe(event))
        self.log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.log.flush()
        if event.kind in ("message", "stage_started"):
            self.status.send("progress", text=text)


def describe(event: Event) -> str:
    data = event.data
    if event.kind == "message":
        return str(data.get("text"))
    if event.kind == "stage_started":
        return f"{data.get('stage')} ..."
    if event.kind == "stage_finished":
        outcome = "done" if data.get("ok") else "failed"
        return f"{data.get('stage')} {outcome} in {float(data.get('seconds', 0)):.1f} s"
    return f"{event.kind}: {json.dumps(data, default=str)}"


class HeldVm:
    """One build VM and everything made for it, journaled as a bake's target is."""

    def __init__(
        self,
        request: VmRequest,
        loaded: LoadedSpec,
        cancel: threading.Event,
        sink_log: IO[str],
        status: StatusChannel,
    ) -> None:
        self.request, self.status = request, status
        build_id, target = new_build_id(), request.target
        self.resources = Resources(state_dir() / "journal", build_id, target)
        workdir = cache_dir() / "work" / f"{build_id}-{target}"
        self.resources.track("workdir", remove_path, path=str(workdir))
        workdir.mkdir(parents=True)
        workdir.chmod(0o700)
        request.log_dir.mkdir(parents=True, exist_ok=True)
        redact = Redactor(v.value for v in loaded.variables.values() if v.sensitive)
        self.ctx = TargetContext(
            build_id=build_id,
            target=target,
            loaded=loaded,
            settings=loaded.targets[target],
            workdir=workdir,
            log_dir=request.log_dir,
            resources=self.resources,
            emit=Emitter(LogSink(sink_log, status, redact), target),
            cancel=cancel,
            redact=redact,
            undo=Rollback(self.resources),
        )
        builder_type: Any = builder_class(loaded.targets[target].builder)  # type: ignore[attr-defined]
        self.builder = builder_type(self.ctx)
        self.wrote_instance = False

    def launch(self) -> SSHEndpoint:
        """prepare + launch on a worker thread, as a bake runs them: the main thread stays
        free for signals, which set `cancel`, and every wait in the builder honours it."""

        def prepare_and_launch() -> SSHEndpoint:
            with self.ctx.emit.stage("source"):
                self.builder.prepare()
            checkpoint(self.ctx.cancel)
            with self.ctx.emit.stage("launch"):
                endpoint: SSHEndpoint = self.builder.launch()
            checkpoint(self.ctx.cancel)
            return endpoint

        with ThreadPoolExecutor(1, thread_name_prefix="vm-launch") as pool:
            return pool.submit(prepare_and_launch).result()

    def publish(self, endpoint: SSHEndpoint) -> Instance:
        """Write the instance file, then tell `vm up`: the file exists whenever `up` succeeded."""
        instance = Instance(
            address=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            identity_file=str(endpoint.private_key),
            known_hosts=str(endpoint.known_hosts),
            host_key_fingerprint=endpoint.host_key_fingerprint,
            authorized_key=endpoint.authorized_key,
            host_keys=endpoint.host_keys,
            build_id=self.ctx.build_id,
            target=self.ctx.target,
            spec=str(self.request.spec),
            journal_dir=str(self.resources.path.parent),
            log_dir=str(self.request.log_dir),
            supervisor_pid=os.getpid(),
            supervisor_start=process_start(os.getpid()) or "",
        )
        instance.write(self.request.instance_file)
        self.wrote_instance = True
        self.status.send("ready", instance=instance.model_dump(mode="json"))
        return instance

    def close(self) -> None:
        """Remove everything, newest first; what fails stays journaled for `imgpipe gc`."""
        with self.ctx.emit.stage("cleanup"):
            for failure in self.ctx.undo.run():
                self.ctx.emit("error", message=f"could not undo {failure}")
            for failure in self.resources.close():
                self.ctx.emit("error", message=str(failure))
        if self.wrote_instance:
            self.request.instance_file.unlink(missing_ok=True)


def serve(request_in: IO[str], status_out: IO[str], log: IO[str]) -> int:
    """The supervisor's whole life; returns its exit code."""
    status = StatusChannel(status_out)
    cancel = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda _signum, _frame: cancel.set())
    try:
        from imgpipe.spec import load_spec

        request = VmRequest.from_json(request_in.read())
        loaded = load_spec(request.spec, request.var_files, request.cli_vars)
        vm = HeldVm(request, loaded, cancel, log, status)
    except Exception as exc:  # noqa: BLE001 - reported to `vm up` as one message
        err = as_imgpipe_error(exc)
        status.send("failed", error=str(err), exit_code=err.exit_code)
        return err.exit_code
    status.send("started", build_id=vm.ctx.build_id, pid=os.getpid())
    vm.ctx.emit.message(f"build {vm.ctx.build_id}, target {request.target}, supervisor pid {os.getpid()}")
    try:
        vm.publish(vm.launch())
        vm.ctx.emit.message("build VM is up; holding it until `imgpipe vm down`")
        while not cancel.wait(1.0):
            pass
        vm.ctx.emit.message("stopping on request")
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to `vm up` as one message
        err = as_imgpipe_error(exc)
        vm.ctx.emit("error", message=str(err))
        status.send("failed", error=vm.ctx.redact.text(str(err)), exit_code=err.exit_code)
        return err.exit_code
    finally:
        vm.close()


def serve_stdio() -> int:
    """`imgpipe vm serve`: status lines on a private copy of stdout, and fd 1 pointed at the
    log, so no command the builder runs can write into (or hold open) the status pipe."""
    status_out = os.fdopen(os.dup(1), "w")  # os.dup makes a non-inheritable descriptor
    os.dup2(2, 1)
    return serve(sys.stdin, status_out, sys.stderr)
