"""Build VMs on a local libvirtd: a copy-on-write overlay on the cached base,
user-mode networking with SSH forwarded to 127.0.0.1, a pinned host key."""

from __future__ import annotations

import contextlib
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.builders.egress_tunnel import close_egress, guest_write_files, open_egress
from imgpipe.builders.libvirt_domain import Accelerator, DomainPlan, domain_xml, probe_accelerator
from imgpipe.builders.sshkeys import (
    BUILD_USER,
    build_vm_user_data,
    free_loopback_port,
    generate_ed25519,
    generate_host_keys,
    wait_for_ssh,
    write_known_hosts,
)
from imgpipe.capture import ImageFormat, convert_image, sha256_file
from imgpipe.cloudinit import write_nocloud_seed
from imgpipe.core import IMAGE_FILE, Artifact, ImageFile, SSHEndpoint, TargetContext
from imgpipe.errors import BuildError, Interrupted, run_command
from imgpipe.journal import remove_path


class LibvirtSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    builder: Literal["libvirt"] = Field(description="Build in a local libvirt/qemu VM.")
    uri: str = Field("qemu:///system", description="libvirt connection URI.")
    accelerator: Accelerator = Field(Accelerator.auto, description="auto probes; tcg where KVM fails.")
    memory_mb: int = Field(1024, ge=256, le=65536, description="Build VM memory in MiB.")
    cpus: int = Field(2, ge=1, le=64, description="Build VM virtual CPUs.")
    disk_gb: int = Field(8, ge=2, le=2048, description="Disk size of the build VM and image in GiB.")
    format: ImageFormat = Field(ImageFormat.qcow2, description="Captured image format.")
    compression: Literal["zstd", "zlib", "none"] = Field(
        "zstd", description="qcow2 compression; zlib for readers older than qemu 5.1."
    )
    ssh_timeout_s: int = Field(600, ge=10, description="How long to wait for SSH after boot.")
    shutdown_timeout_s: int = Field(120, ge=5, description="Clean power-off deadline before destroy.")


def _connect(uri: str) -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # we raise, libvirt must not print
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise BuildError(
            f"cannot connect to libvirt at {uri}: {exc}",
            hint="start the daemons (./run does: virtlogd -d; libvirtd -d) or set the target's 'uri'",
        ) from None


def remove_domain(uri: str, name: str) -> None:
    """Cleaner: destroy (and undefine, if defined) a build domain; absent is fine.
    A transient domain vanishes on destroy, so check the outcome, not each call."""
    import libvirt

    conn = _connect(uri)
    try:
        try:
            dom = conn.lookupByName(name)
            persistent = dom.isPersistent()
        except libvirt.libvirtError:
            return
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        if persistent:
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        try:
            conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        raise BuildError(f"libvirt domain {name} still exists after destroy")
    finally:
        conn.close()


def console_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError:
        return "(no console output)"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)
    return "\n".join(text.splitlines()[-lines:]) or "(no console output)"


TEST_BOOT = "test-boot"  # journal kind of what a test boot of the captured image made


@dataclass(frozen=True)
class _Vm:
    name: str  # the libvirt domain
    workdir: Path  # its overlay, seed, keys and known_hosts
    console_log: Path
    instance_id: str  # what cloud-init sees: a new one is a new instance


class LibvirtBuilder:
    Settings: ClassVar[type[BaseModel]] = LibvirtSettings
    builder_type: ClassVar[str] = "imgpipe.libvirt"
    produces: ClassVar[str] = IMAGE_FILE

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self.settings: LibvirtSettings = ctx.settings  # type: ignore[assignment]
        self.domain_name = f"imgpipe-{ctx.build_id}-{ctx.target}"
        self.disk = ctx.workdir / "disk.qcow2"
        self.console_log = ctx.log_dir / "console.log"
        self.base: Path | None = None
        self.endpoint: SSHEndpoint | None = None
        self.test_endpoint: SSHEndpoint | None = None

    def prepare(self) -> dict[str, object]:
        from imgpipe.sources import resolve_source

        # held (shared lock) until the resources unwind: old bases are removed only when unused
        resolved = resolve_source(
            self.ctx.loaded,
            self.ctx.emit,
            self.ctx.cancel,
            resources=self.ctx.resources,
            target=self.ctx.target,
        )
        self.base = resolved.path
        self.base_format = resolved.format
        return resolved.record

    def launch(self) -> SSHEndpoint:
        assert self.base is not None, "prepare() first"
        s = self.settings
        vm = _Vm(self.domain_name, self.ctx.workdir, self.console_log, f"imgpipe-{self.ctx.build_id}")
        self.endpoint = self._boot(vm, self.base, self.base_format, f"{s.disk_gb}G", hostname=True)
        open_egress(self.endpoint, self.ctx.resources, self._report_refused)
        return self.endpoint

    def boot_image(self, artifact: Artifact) -> SSHEndpoint:
        """A fresh VM from the captured file, for the image tests: a throwaway overlay, a
        new seed (a new instance to cloud-init, no hostname given: the image keeps its own),
        new client and host keys, no package egress. `discard_image_boot` removes it."""
        if not isinstance(artifact, ImageFile):
            raise BuildError(f"the libvirt builder boots image files, not {artifact.kind!r} artifacts")
        workdir = self.ctx.workdir / "test-boot"
        workdir.mkdir(mode=0o700)
        self.ctx.resources.track(TEST_BOOT, remove_path, path=str(workdir))
        log_dir = self.ctx.log_dir / "verify"
        log_dir.mkdir(parents=True, exist_ok=True)
        vm = _Vm(
            f"{self.domain_name}-test", workdir, log_dir / "console.log", f"imgpipe-{self.ctx.build_id}-test"
        )
        self.test_vm = vm
        self.test_endpoint = self._boot(vm, artifact.partial, artifact.format, None, hostname=False)
        return self.test_endpoint

    def discard_image_boot(self) -> None:
        self.ctx.resources.close_kind(TEST_BOOT)

    def _boot(
        self, vm: _Vm, backing: Path, backing_format: str, size: str | None, *, hostname: bool
    ) -> SSHEndpoint:
        """Start a VM on an overlay of `backing` and wait until SSH answers with the host key
        imgpipe generated for it (pinned in its known_hosts)."""
        wd, s, build_vm = vm.workdir, self.settings, vm.name == self.domain_name
        client = generate_ed25519(wd / "build_key", f"imgpipe-build-{self.ctx.build_id}")
        host_keys = generate_host_keys(wd, f"imgpipe-host-{self.ctx.build_id}")
        host = host_keys["ed25519"]
        user_data = build_vm_user_data(client, host_keys, user=BUILD_USER)
        if build_vm:
            user_data["write_files"] = guest_write_files()
        seed = wd / "seed.iso"
        write_nocloud_seed(
            seed,
            instance_id=vm.instance_id,
            hostname=f"imgpipe-{self.ctx.target}" if hostname else None,
            user_data=user_data,
        )
        for key in host_keys.values():  # only the seed needs them now; it goes with the workdir
            key.private.unlink()
        disk = wd / "disk.qcow2"
        create = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", str(backing)]
        run_command([*create, str(disk), *([size] if size else [])])
        accel = probe_accelerator(s.accelerator)
        self.ctx.emit.message(f"{vm.name}: accelerator {accel.value}, {s.cpus} vCPU, {s.memory_mb} MiB")
        conn = _connect(s.uri)
        try:
            port = self._start_domain(conn, accel, vm, disk, seed)
        finally:
            conn.close()
        known_hosts = wd / "known_hosts"
        write_known_hosts(known_hosts, "127.0.0.1", port, host)
        endpoint = SSHEndpoint(
            "127.0.0.1",
            port,
            BUILD_USER,
            client.private,
            known_hosts,
            host.fingerprint,
            client.public,
            tuple(k.public for k in host_keys.values()),
        )
        with self.ctx.emit.stage("boot_to_ssh" if build_vm else "test_boot_to_ssh"):
            self._wait_for_ssh(endpoint, vm)
        return endpoint

    def _report_refused(self, text: str) -> None:
        self.ctx.emit.message(f"package proxy refused {text} (the build VM may reach only the network)")

    def finish_provisioning(self) -> None:
        assert self.endpoint is not None, "launch() first"
        close_egress(self.endpoint, self.ctx.resources)

    def _start_domain(self, conn: Any, accel: Accelerator, vm: _Vm, disk: Path, seed: Path) -> int:
        import libvirt

        s = self.settings
        # Recorded before it exists: a kill -9 between create and record must not leak it.
        kind = "libvirt-domain" if vm.name == self.domain_name else TEST_BOOT
        self.ctx.resources.track(kind, remove_domain, uri=s.uri, name=vm.name)
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = free_loopback_port()
            plan = DomainPlan(
                vm.name,
                self.ctx.build_id,
                self.ctx.target,
                accel,
                s.memory_mb,
                s.cpus,
                disk,
                seed,
                vm.console_log,
                port,
            )
            try:
                conn.createXML(domain_xml(plan), 0)
                return port
            except libvirt.libvirtError as exc:
                if "hostfwd" not in str(exc) and "Could not set up host forwarding" not in str(exc):
                    raise BuildError(f"libvirt could not start the build VM: {exc}") from None
        raise BuildError("could not forward a free loopback port to the build VM")

    def _domain_running(self, name: str | None = None) -> bool:
        import libvirt

        conn = _connect(self.settings.uri)
        try:
            return bool(conn.lookupByName(name or self.domain_name).isActive())
        except libvirt.libvirtError:
            return False
        finally:
            conn.close()

    def _wait_for_ssh(self, ep: SSHEndpoint, vm: _Vm) -> None:
        wait_for_ssh(
            ep,
            timeout=self.settings.ssh_timeout_s,
            cancel=self.ctx.cancel,
            still_running=lambda: self._domain_running(vm.name),
            describe=lambda: f"console tail ({vm.console_log}):\n{console_tail(vm.console_log)}",
            hint="raise ssh_timeout_s, or check that the image runs cloud-init with NoCloud",
        )

    def stop(self) -> None:
        import libvirt

        conn = _connect(self.settings.uri)
        try:
            dom = conn.lookupByName(self.domain_name)
            deadline = time.monotonic() + self.settings.shutdown_timeout_s
            while dom.isActive() and time.monotonic() < deadline:
                try:
                    dom.shutdown()  # ACPI; the guest's logind powers off
                except libvirt.libvirtError:
                    if not dom.isActive():
                        break
                if self.ctx.cancel.wait(max(0.0, min(1.0, deadline - time.monotonic()))):
                    raise Interrupted("interrupted during power-off")
        except libvirt.libvirtError:
            pass  # a transient domain vanishes once it is off
        finally:
            conn.close()
        if self._domain_running():
            # cache=unsafe: whatever the guest had not flushed is lost, so the disk can't ship
            remove_domain(self.settings.uri, self.domain_name)
            raise BuildError(
                f"the build VM did not power off within {self.settings.shutdown_timeout_s} s, so its "
                "disk may be inconsistent and no image was captured\n"
                f"console tail ({self.console_log}):\n{console_tail(self.console_log)}",
                hint="a role may have disabled ACPI power-off (logind HandlePowerKey, a masked "
                "poweroff.target); or raise shutdown_timeout_s",
            )

    def capture(self, dest_dir: Path, basename: str) -> ImageFile:
        s = self.settings
        name = f"{basename}.{s.format.value}"
        partial = dest_dir / f".{name}.partial"
        self.ctx.resources.track("partial-image", remove_path, path=str(partial))
        convert_image(self.disk, partial, s.format, s.compression)
        return ImageFile(partial, name, s.format.value, sha256_file(partial), partial.stat().st_size)

    def debug_hint(self) -> str:
        if self.test_endpoint is not None:  # the image tests failed: their VM is what to look at
            vm = self.test_vm
            return (
                f"test VM {vm.name} of the captured image is kept running for debugging.\n"
                f"  reach it:  {shlex.join(self.test_endpoint.ssh_argv())}\n"
                f"  console:   {vm.console_log}\n"
                f"  remove it: imgpipe gc --build {self.ctx.build_id}"
            )
        ep = self.endpoint
        ssh = shlex.join(ep.ssh_argv()) if ep else "(the VM never reached SSH)"
        return (
            f"build VM {self.domain_name} is kept running for debugging.\n"
            f"  reach it:  {ssh}\n"
            f"  console:   {self.console_log}\n"
            f"  remove it: imgpipe gc --build {self.ctx.build_id}"
        )
