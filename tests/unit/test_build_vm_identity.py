"""What cloud-init is told to make of a build VM: every default host key type (the
ed25519 one pinned), and the build key for a temporary sudo user, never for root unless
asked; and the guest-side proxy settings are removed by exactly the lines that added them."""

import subprocess

from imgpipe.builders.egress_tunnel import ENVIRONMENT, guest_cleanup_script, guest_write_files
from imgpipe.builders.sshkeys import BUILD_USER, build_vm_user_data, generate_ed25519, generate_host_keys


def test_build_user_gets_the_key_and_root_does_not(tmp_path):
    client = generate_ed25519(tmp_path / "client", "c")
    keys = generate_host_keys(tmp_path, "h")
    config = build_vm_user_data(client, keys, user=BUILD_USER)
    assert sorted(config["ssh_genkeytypes"]) == ["ecdsa", "ed25519", "rsa"]
    for keytype, pair in keys.items():
        assert config["ssh_keys"][f"{keytype}_public"] == pair.public
        assert "PRIVATE KEY" in config["ssh_keys"][f"{keytype}_private"]
    (user,) = config["users"]
    assert user["name"] == BUILD_USER and user["ssh_authorized_keys"] == [client.public]
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and user["lock_passwd"] is True
    assert "ssh_authorized_keys" not in config  # nothing for root


def test_root_login_only_when_asked(tmp_path):
    client = generate_ed25519(tmp_path / "client", "c")
    host = generate_ed25519(tmp_path / "host", "h")
    config = build_vm_user_data(client, {"ed25519": host}, user="root")
    assert config["users"] == [] and config["ssh_authorized_keys"] == [client.public]


def test_guest_cleanup_removes_exactly_the_lines_cloud_init_appended(tmp_path):
    env = tmp_path / "environment"
    env.write_text('LANG="C.UTF-8"\n')
    (appended,) = [f for f in guest_write_files() if f["path"] == ENVIRONMENT]
    env.write_text(env.read_text() + appended["content"])
    script = guest_cleanup_script().replace(ENVIRONMENT, str(env)).split("&&", 1)[1]
    subprocess.run(["sh", "-c", script], check=True)
    assert env.read_text() == 'LANG="C.UTF-8"\n'
