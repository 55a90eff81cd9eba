"""moto's instances do not run. These play the build instance on loopback instead, set
up from the instance's own user data the way cloud-init would set up a real one: its
host key and the authorized build key. imgpipe then reaches them through the builder's
`ssh_host`/`ssh_port` and provisions them with real Ansible over real SSH.

- SshdStandIn: this host's sshd on a free 127.0.0.1 port (seconds; specs using it must
  disable the seal, which would reset this host's identity).
- InstanceWatcher: watches moto for the build instance and hands its user data over."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from imgpipe.builders.sshkeys import free_loopback_port, ssh_banner
from tests.aws.conftest import SOURCE_REGION, plain

SSHD = "/usr/sbin/sshd"


def cloud_config(user_data: str) -> dict:
    assert user_data.startswith("#cloud-config\n"), user_data[:40]
    return yaml.safe_load(user_data)


class SshdStandIn:
    """An sshd that authorizes, and identifies itself with, what the user data says."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_loopback_port()
        self.proc: subprocess.Popen | None = None

    def serve(self, user_data: str, host_key: str | None = None) -> None:
        """Start sshd with the user data's host key (or `host_key`, a private key text
        standing in for an instance that is not the one imgpipe launched). A later instance
        (the test boot of the new AMI) takes the port over from the build instance's."""
        self.close()
        config = cloud_config(user_data)
        key = self.dir / "host_ed25519"
        key.write_text(host_key or config["ssh_keys"]["ed25519_private"])
        key.chmod(0o600)
        authorized = self.dir / "authorized_keys"
        authorized.write_text("\n".join(config["ssh_authorized_keys"]) + "\n")
        conf = self.dir / "sshd_config"
        conf.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not ssh_banner("127.0.0.1", self.port):
            assert self.proc.poll() is None, "sshd stand-in exited"
            assert time.monotonic() < deadline, "sshd stand-in did not answer"
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def user_data_of(instance_id: str, region: str = SOURCE_REGION) -> str:
    value = plain("ec2", region).describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(value["UserData"]["Value"]).decode()


class InstanceWatcher(threading.Thread):
    """Polls moto for build instances (tagged imgpipe:build-id) and calls `on_instance`
    with the user data of each new running one, once."""

    def __init__(self, on_instance: Callable[[str, str], None], region: str = SOURCE_REGION) -> None:
        super().__init__(daemon=True)
        self.on_instance, self.region = on_instance, region
        self.seen: list[str] = []
        self.errors: list[BaseException] = []
        self._done = threading.Event()

    def run(self) -> None:
        ec2 = plain("ec2", self.region)
        while not self._done.wait(0.05):
            try:
                found = ec2.describe_instances(
                    Filters=[
                        {"Name": "tag-key", "Values": ["imgpipe:build-id"]},
                        {"Name": "instance-state-name", "Values": ["pending", "running"]},
                    ]
                )["Reservations"]
                for instance in (i for r in found for i in r["Instances"]):
                    if instance["InstanceId"] not in self.seen:
                        self.seen.append(instance["InstanceId"])
                        self.on_instance(
                            instance["InstanceId"], user_data_of(instance["InstanceId"], self.region)
                        )
            except Exception as exc:  # noqa: BLE001 - reported by stop()
                self.errors.append(exc)
                return

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)
        assert not self.errors, self.errors
