"""One function per host check, each returning a Check: what was found, and what to do
about it. Checks never print, never exit and never raise on a broken host (an unexpected
exception is turned into a FAIL line by imgpipe.doctor.run). Every path, PATH and
threshold a check reads is a parameter, so tests can simulate a broken host honestly."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgpipe.aws.session import AwsSettings

GiB = 1024**3
KVM = Path("/dev/kvm")
CPUINFO = Path("/proc/cpuinfo")
SETUP_HOST = "scripts/setup-host"


class Status(StrEnum):
    ok = "ok"
    warn = "warn"  # a bake works, but slower or with a caveat
    fail = "fail"  # a bake would fail


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix or None,
        }


def whoami() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def owner_mode(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    return f"{user}:{group_name(st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"


# --- libvirt ---------------------------------------------------------------------------------


def _dotted(version: int) -> str:
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"


def libvirtd(uri: str) -> Check:
    """The libvirt daemon answers on `uri` (the URI a libvirt target builds with)."""
    try:
        import libvirt
    except ImportError:
        return Check(
            "libvirtd",
            Status.fail,
            "the libvirt Python binding is not installed in this Python",
            "pip install libvirt-python (needs libvirt-dev and pkg-config)",
        )
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # we report; libvirt must not print
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "ermission denied" in message:
            fix = (
                "add your user to the group libvirt (usermod -aG libvirt USER, then log in again), "
                "or build with uri: qemu:///session"
            )
        else:
            fix = (
                "start the daemons (systemctl start libvirtd; without systemd: virtlogd -d; libvirtd -d; "
                f"{SETUP_HOST} does this) or set the target's uri"
            )
        return Check("libvirtd", Status.fail, f"{uri}: cannot connect: {message}", fix)
    try:
        detail = f"{uri}, libvirt {_dotted(conn.getLibVersion())}"
        with contextlib.suppress(libvirt.libvirtError):  # not every driver has a hypervisor version
            detail += f", {conn.getType().lower()} {_dotted(conn.getVersion())}"
    finally:
        conn.close()
    return Check("libvirtd", Status.ok, detail)


def libvirtd_started_at(proc: Path = Path("/proc")) -> tuple[int, float] | None:
    """(pid, start time as a Unix time) of the local libvirt daemon, None if none runs."""
    try:
        btime = next(
            float(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in ("libvirtd", "virtqemud"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return int(entry.name), btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return None


# --- programs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    name: str
    package: str  # the Debian package that has it
    needed_for: str


QEMU_SYSTEM = Program("qemu-system-x86_64", "qemu-system-x86", "build VMs, run by libvirtd")
QEMU_IMG = Program("qemu-img", "qemu-utils", "overlays and image capture")
MMDEBSTRAP = Program("mmdebstrap", "mmdebstrap", "source.bootstrap, the default source")


def program(prog: Program, path: str | None = None, *, required: bool = True) -> Check:
    """`prog` on PATH (`path`, default $PATH) and its version. Missing is a fail when
    `required`, else a warning."""
    exe = shutil.which(prog.name, path=path)
    if exe is None:
        return Check(
            prog.name,
            Status.fail if required else Status.warn,
            f"not found on PATH (needed for {prog.needed_for})",
            f"apt-get install {prog.package} (Debian/Ubuntu), or put {prog.name} on PATH",
        )
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(prog.name, Status.fail, f"{exe} --version failed: {exc}", f"reinstall {prog.package}")
    first = (out.stdout or out.stderr).strip().splitlines()[:1]
    found = re.search(r"(\d+\.\d+[\w.+~:-]*)", first[0]) if first else None
    if out.returncode != 0 or found is None:
        shown = first[0] if first else f"exit {out.returncode}"
        return Check(
            prog.name,
            Status.fail,
            f"{exe} --version: {shown} (exit {out.returncode})",
            f"reinstall {prog.package}",
        )
    return Check(prog.name, Status.ok, f"{found.group(1)} ({exe})")


def ansible() -> Check:
    """ansible-runner and ansible-core importable here, and ansible-playbook where
    imgpipe.provision looks for it (beside this Python, then PATH)."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for module in ("ansible_runner", "ansible"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        return Check(
            "ansible",
            Status.fail,
            f"cannot import {', '.join(missing)} in {sys.executable}",
            "pip install ansible-core ansible-runner into imgpipe's environment",
        )
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    playbook = shutil.which("ansible-playbook", path=search)
    try:
        versions = f"ansible-core {version('ansible-core')}, ansible-runner {version('ansible-runner')}"
    except PackageNotFoundError as exc:
        versions = f"(no version for {exc})"
    if playbook is None:
        return Check(
            "ansible",
            Status.fail,
            f"{versions}, but no ansible-playbook beside {sys.executable} or on PATH",
            "pip install ansible-core into imgpipe's environment",
        )
    return Check("ansible", Status.ok, f"{versions} ({playbook})")


# --- disk -------------------------------------------------------------------------------------


def disk_space(directory: Path | None = None, fail_below: int = 5 * GiB, warn_below: int = 15 * GiB) -> Check:
    """Free space where base images, downloads and build overlays go (imgpipe.paths.cache_dir)."""
    if directory is None:
        from imgpipe.paths import cache_dir

        directory = cache_dir()
    free = shutil.disk_usage(directory).free
    detail = f"{free / GiB:.1f} GiB free in {directory}"
    fix = "free space there, or point IMGPIPE_CACHE_DIR at a larger disk"
    if free < fail_below:
        return Check("disk", Status.fail, f"{detail} (a bake needs {fail_below / GiB:g} GiB or more)", fix)
    if free < warn_below:
        return Check(
            "disk", Status.warn, f"{detail} (under {warn_below / GiB:g} GiB: a few bakes fill it)", fix
        )
    return Check("disk", Status.ok, detail)


# --- catalog and AWS --------------------------------------------------------------------------


def catalog(url: str | None = None) -> Check:
    """The catalog opens (created or migrated as a bake would); its URL shown without password."""
    from imgpipe.catalog import catalog_url, mask_url, open_catalog
    from imgpipe.catalog.url import scrub
    from imgpipe.errors import ImgpipeError

    target = catalog_url(url)
    try:
        with open_catalog(target):
            pass
    except ImgpipeError as exc:
        line = scrub(exc.message.strip().splitlines()[0] if exc.message.strip() else repr(exc), target)
        fix = (
            exc.hint
            or "check the URL (--catalog or IMGPIPE_CATALOG), that the server runs, and its credentials"
        )
        return Check("catalog", Status.fail, line, scrub(fix, target))
    return Check("catalog", Status.ok, mask_url(target))


_CREDENTIAL_SOURCES = {
    "env": "environment variables (AWS_ACCESS_KEY_ID)",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "iam-role": "the instance role (instance metadata)",
    "container-role": "the container role",
    "assume-role": "an assumed role (profile role_arn)",
    "assume-role-with-web-identity": "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)",
    "sso": "AWS SSO (aws sso login)",
    "custom-process": "a credential_process",
}


def aws_credentials(settings: AwsSettings, needed_by: str) -> Check:
    """boto3 resolves credentials for `settings` (profile, environment, instance role...).
    Says where they come from, never what they are; not verified against AWS."""
    from imgpipe.aws.session import AwsSession
    from imgpipe.errors import ImgpipeError

    name = f"aws:{settings.profile}" if settings.profile else "aws"
    fix = (
        "set AWS_PROFILE (aws configure / aws sso login), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or run on an instance with a role"
    )
    try:
        session = AwsSession(settings)
        credentials = session.boto.get_credentials()
    except ImgpipeError as exc:
        return Check(name, Status.fail, f"{exc.message} (needed by {needed_by})", exc.hint or fix)
    except Exception as exc:  # noqa: BLE001 - botocore's many credential errors, one line each
        return Check(name, Status.fail, f"{type(exc).__name__}: {exc} (needed by {needed_by})", fix)
    if credentials is None:
        return Check(name, Status.fail, f"no credentials found (needed by {needed_by})", fix)
    method = getattr(credentials, "method", "") or "unknown"
    source = _CREDENTIAL_SOURCES.get(method, method)
    profile = settings.profile or session.boto.profile_name
    where = f"from {source}" + (f", profile {profile}" if profile and method != "env" else "")
    region = settings.region or session.boto.region_name
    if not region:
        return Check(
            name,
            Status.warn,
            f"credentials {where}; no region configured (needed by {needed_by})",
            "set the target's aws.region, AWS_DEFAULT_REGION, or a region in the profile",
        )
    return Check(
        name, Status.ok, f"credentials {where}, region {region}; needed by {needed_by} (not verified)"
    )
