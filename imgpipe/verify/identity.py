"""The built-in checks of a fresh boot: an instance of the image must not inherit the build
VM's identity. What the build VM was is read before the seal (`read_build_identity`);
what the fresh boot is, by one probe script over SSH; each check compares the two.

Each check names the seal step that should have made it pass: a step the spec skips
(`seal.skip`) makes its check `skipped`, not failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from imgpipe.core.ssh import SSHEndpoint
from imgpipe.errors import run_command

_READ_BUILD = "cat /etc/machine-id; hostname; cat /var/lib/cloud/data/instance-id 2>/dev/null || true"

# Run as root on the fresh boot; prints `key=value` lines.
_PROBE = r"""
set -u
command -v cloud-init >/dev/null && timeout 300 cloud-init status --wait >/dev/null 2>&1
echo "machine_id=$(cat /etc/machine-id 2>/dev/null)"
echo "hostname=$(hostname)"
echo "instance_id=$(cat /var/lib/cloud/data/instance-id 2>/dev/null)"
echo "cloud_init=$(cloud-init status 2>/dev/null | sed -n 's/^status: //p')"
for d in /var/lib/cloud/instances/*/; do [ -d "$d" ] && echo "instance_dir=$(basename "$d")"; done
for f in /etc/ssh/ssh_host_*_key.pub; do [ -f "$f" ] && echo "host_key=$(cut -d' ' -f2 "$f")"; done
getent passwd | cut -d: -f1,6 | while IFS=: read -r user home; do
  for f in "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"; do
    [ -f "$f" ] && sed -n "s|^|authorized=$user |p" "$f"
  done
  for f in .bash_history .zsh_history .sh_history .python_history .lesshst .viminfo .psql_history; do
    [ -s "$home/$f" ] && echo "history=$home/$f"
  done
done
true
"""


class Outcome(StrEnum):
    passed = "passed"
    failed = "failed"
    skipped = "skipped"


@dataclass(frozen=True)
class BuildIdentity:
    """What the build VM was, read before the seal."""

    machine_id: str
    hostname: str
    instance_id: str
    host_keys: tuple[str, ...]  # key blobs imgpipe injected
    build_key: str  # the build key's blob


@dataclass(frozen=True)
class CheckResult:
    name: str  # also the seal step that makes it pass
    outcome: Outcome
    detail: str

    def record(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass
class Probe:
    """What the fresh boot is."""

    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Probe:
        probe = cls()
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key in {"instance_dir", "host_key", "authorized", "history"}:
                probe.lists.setdefault(key, []).append(value)
            else:
                probe.values[key] = value.strip()
        return probe


def _as_root(ep: SSHEndpoint) -> list[str]:
    sh = "sh -s" if ep.user == "root" else "sudo -n sh -s"
    return [*ep.ssh_argv(), sh]


def read_build_identity(ep: SSHEndpoint) -> BuildIdentity:
    lines = [*run_command([*ep.ssh_argv(), _READ_BUILD], timeout=60).splitlines(), "", "", ""]
    return BuildIdentity(
        machine_id=lines[0].strip(),
        hostname=lines[1].strip(),
        instance_id=lines[2].strip(),
        host_keys=tuple(key.split()[1] for key in ep.host_keys),
        build_key=ep.authorized_key.split()[1],
    )


def probe(ep: SSHEndpoint, timeout: float = 360) -> Probe:
    return Probe.parse(run_command(_as_root(ep), timeout=timeout, input=_PROBE.encode()))


def evaluate(build: BuildIdentity, fresh: Probe, skipped_steps: set[str]) -> list[CheckResult]:
    v, lists = fresh.values, fresh.lists
    authorized = [line for line in lists.get("authorized", []) if build.build_key in line]
    stale_dirs = [d for d in lists.get("instance_dir", []) if d != v.get("instance_id")]
    stale_keys = [k for k in lists.get("host_key", []) if k in build.host_keys]
    checks = [
        (
            "machine_id",
            bool(v.get("machine_id")) and v.get("machine_id") != build.machine_id,
            f"machine-id {v.get('machine_id') or '(empty)'}; the build VM's was {build.machine_id}",
        ),
        (
            "ssh_host_keys",
            bool(lists.get("host_key")) and not stale_keys,
            f"{len(stale_keys)} of {len(lists.get('host_key', []))} host keys are the build VM's",
        ),
        (
            "build_key",
            not authorized,
            "the build key is authorized for "
            + (", ".join(sorted({line.split()[0] for line in authorized})) or "no user"),
        ),
        (
            "cloud_init",
            bool(v.get("instance_id"))
            and v.get("instance_id") != build.instance_id
            and not stale_dirs
            and v.get("cloud_init") in {"done", "degraded done"},
            f"cloud-init status {v.get('cloud_init') or '(none)'}, "
            f"instance {v.get('instance_id') or '(none)'}"
            + (f", state left from {', '.join(stale_dirs)}" if stale_dirs else ""),
        ),
        (
            "hostname",
            v.get("hostname") != build.hostname,
            f"hostname {v.get('hostname')!r}; the build VM's was {build.hostname!r}",
        ),
        (
            "shell_history",
            not lists.get("history"),
            "shell history: " + (", ".join(lists.get("history", [])) or "none"),
        ),
    ]
    return [
        CheckResult(
            name,
            Outcome.skipped if name in skipped_steps else Outcome.passed if ok else Outcome.failed,
            detail,
        )
        for name, ok, detail in checks
    ]


def describe(results: list[CheckResult]) -> str:
    return "; ".join(f"{r.name}: {r.detail}" for r in results)
