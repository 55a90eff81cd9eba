"""Every role imgpipe ships has a Molecule scenario, and every scenario connects the way a
bake does: through imgpipe's driver, with the VM's host key pinned (Molecule's defaults turn
host-key checking off, so a scenario that forgets one override would silently trust any key)."""

import yaml

from tests.conftest import REPO

MOLECULE = REPO / "molecule"
SCENARIOS = sorted(p.parent for p in MOLECULE.glob("*/molecule.yml"))
PINNED_FILE = "${MOLECULE_EPHEMERAL_DIRECTORY}/imgpipe/known_hosts"


def config(scenario):
    return yaml.safe_load((scenario / "molecule.yml").read_text())


def test_every_shipped_role_has_a_scenario():
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
    assert roles and set(roles) <= {s.name for s in SCENARIOS}


def test_every_scenario_pins_the_build_vms_host_key():
    for scenario in SCENARIOS:
        cfg = config(scenario)
        ssh = " ".join(cfg["driver"]["ssh_connection_options"])
        assert "-F /dev/null" in ssh, scenario.name
        assert "StrictHostKeyChecking=yes" in ssh and "StrictHostKeyChecking=no" not in ssh, scenario.name
        assert f'UserKnownHostsFile="{PINNED_FILE}"' in ssh, scenario.name
        assert "/dev/null" not in ssh.replace("-F /dev/null", ""), scenario.name
        assert cfg["ansible"]["cfg"]["defaults"]["host_key_checking"] is True, scenario.name


def test_every_scenario_uses_imgpipes_driver():
    for scenario in SCENARIOS:
        cfg = config(scenario)
        assert cfg["driver"]["name"] == "default" and cfg["driver"]["options"]["managed"] is True
        playbooks = cfg["ansible"]["playbooks"]
        assert (scenario / playbooks["create"]).resolve() == MOLECULE / "imgpipe_driver" / "create.yml"
        assert (scenario / playbooks["destroy"]).resolve() == MOLECULE / "imgpipe_driver" / "destroy.yml"
        for platform in cfg["platforms"]:
            assert (scenario / platform["imgpipe_spec"]).is_file(), (scenario.name, platform["name"])


def test_the_driver_pins_the_file_the_scenarios_name():
    create = yaml.safe_load((MOLECULE / "imgpipe_driver" / "create.yml").read_text())
    (play,) = create
    assert play["vars"]["imgpipe_vm_dir"] == "{{ molecule_ephemeral_directory }}/imgpipe"
    pin = next(
        t for t in play["tasks"] if "known_hosts" in str(t.get("ansible.builtin.copy", {}).get("dest"))
    )
    assert pin["ansible.builtin.copy"]["dest"] == "{{ imgpipe_vm_dir }}/known_hosts"


def test_the_seal_is_not_converged_twice():
    """It deletes the login Molecule uses: a second converge cannot connect."""
    sequence = config(MOLECULE / "imgpipe_seal")["scenario"]["test_sequence"]
    assert "idempotence" not in sequence and "converge" in sequence
