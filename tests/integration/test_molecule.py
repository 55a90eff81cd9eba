"""The roles imgpipe ships, tested as any Ansible role is: `molecule test` for each scenario
under molecule/, in imgpipe's own build VM (the driver in molecule/imgpipe_driver/ calls
`imgpipe vm up/down`), with the VM's host key pinned: a VM whose key is not the pinned one
is refused."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgpipe.builders.sshkeys import generate_ed25519
from imgpipe.vm import process_start
from tests.conftest import REPO
from tests.integration.conftest import NOTHING, leftovers

VENV_BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.fixture
def molecule_env(imgpipe_env, base_image, tmp_path):
    """imgpipe's shared cache (the base is bootstrapped once per run), a private journal, and
    a private Molecule ephemeral directory (instance config, pinned known_hosts, VM logs)."""
    return {
        **imgpipe_env,
        "PATH": f"{VENV_BIN}:{imgpipe_env['PATH']}",  # molecule, ansible-playbook and imgpipe
        "IMGPIPE_STATE_DIR": str(tmp_path / "state"),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }


def molecule(env, *args, timeout=3600):
    proc = subprocess.run(
        [str(VENV_BIN / "molecule"), *args],
        cwd=REPO,  # Molecule finds molecule/<scenario>/ from the project's root
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, proc.stdout + proc.stderr


def started_vms(env) -> list[tuple[str, int]]:
    """(build id, supervisor pid) of every VM the scenario's driver started, from the
    supervisor logs Molecule keeps after destroy."""
    logs = Path(env["MOLECULE_EPHEMERAL_DIRECTORY"]).glob("imgpipe/*.logs/supervisor.log")
    text = "".join(p.read_text() for p in logs)
    return [(b, int(pid)) for b, pid in re.findall(r"build (\S+), target \S+, supervisor pid (\d+)", text)]


def assert_nothing_left(env) -> None:
    vms = started_vms(env)
    assert vms, "no build VM was started"
    for build_id, pid in vms:
        assert leftovers(env, build_id) == NOTHING
        assert process_start(pid) is None, f"supervisor {pid} of build {build_id} still runs"
    assert list((Path(env["IMGPIPE_STATE_DIR"]) / "journal").glob("*.json")) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_test_passes_and_leaves_nothing(scenario, molecule_env):
    start = time.monotonic()
    proc, out = molecule(molecule_env, "test", "-s", scenario)
    took = time.monotonic() - start
    print(f"molecule test -s {scenario}: {took:.0f} s")
    assert proc.returncode == 0, out[-6000:]
    assert re.search(rf"{scenario}\s*: actions=\d+\s+successful=\d+.*failed=0", out), out[-3000:]
    assert_nothing_left(molecule_env)


def ping(env) -> subprocess.CompletedProcess[str]:
    """Ansible's ping through exactly the inventory and ansible.cfg Molecule wrote."""
    ephemeral = Path(env["MOLECULE_EPHEMERAL_DIRECTORY"])
    return subprocess.run(
        [str(VENV_BIN / "ansible"), "all", "-i", str(ephemeral / "inventory"), "-m", "ansible.builtin.ping"],
        env={**env, "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_vm_whose_host_key_is_not_the_pinned_one_is_refused(molecule_env, tmp_path):
    ephemeral = Path(molecule_env["MOLECULE_EPHEMERAL_DIRECTORY"])
    try:
        proc, out = molecule(molecule_env, "create", "-s", "nginx")
        assert proc.returncode == 0, out[-6000:]
        known_hosts = ephemeral / "imgpipe" / "known_hosts"
        pinned = known_hosts.read_text()
        host = pinned.split()[0]
        other = generate_ed25519(tmp_path / "other_host_key", "not-the-vm").public.split()
        known_hosts.write_text(f"{host} {other[0]} {other[1]}\n")

        # Nothing has logged in yet, so no ssh control master could skip the check.
        refused = ping(molecule_env)
        assert refused.returncode != 0
        assert "HOST IDENTIFICATION HAS CHANGED" in refused.stdout + refused.stderr, refused.stdout
        proc, out = molecule(molecule_env, "converge", "-s", "nginx")
        assert proc.returncode != 0
        assert "Host key verification failed" in out or "HOST IDENTIFICATION HAS CHANGED" in out, out[-4000:]

        known_hosts.write_text(pinned)  # the control: the same VM, with its pinned key
        reached = ping(molecule_env)
        assert reached.returncode == 0, reached.stdout + reached.stderr
    finally:
        proc, out = molecule(molecule_env, "destroy", "-s", "nginx")
    assert proc.returncode == 0, out[-4000:]
    assert_nothing_left(molecule_env)
