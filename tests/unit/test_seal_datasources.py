"""An image published to a cloud must let cloud-init find that cloud: the seal adds the
publishers' datasources to imgpipe's base config, and leaves other images alone."""

import subprocess

from imgpipe.pipeline import cloud_datasources
from imgpipe.shipped import shipped_dir
from imgpipe.spec import load_spec
from tests.conftest import write

SCRIPT = shipped_dir("roles") / "imgpipe_seal" / "files" / "cloud_datasources.sh"
BASE_CFG = "network: {config: disabled}\ndatasource_list: [NoCloud, None]\n"


def run(cfg_dir, datasources):
    return subprocess.run(["sh", str(SCRIPT), str(cfg_dir), datasources], capture_output=True, text=True)


def test_base_config_gains_the_cloud_and_keeps_the_rest(tmp_path):
    write(tmp_path / "90-imgpipe-base.cfg", BASE_CFG)
    out = run(tmp_path, "Ec2")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "90-imgpipe-base.cfg").read_text()
    assert text == "network: {config: disabled}\ndatasource_list: [NoCloud, Ec2, None]\n"


def test_foreign_image_is_left_alone_and_bad_names_refused(tmp_path):
    out = run(tmp_path, "Ec2")
    assert out.returncode == 0 and "left as it is" in out.stdout and list(tmp_path.iterdir()) == []
    write(tmp_path / "90-imgpipe-base.cfg", BASE_CFG)
    assert run(tmp_path, "Ec2]; rm").returncode == 2
    assert (tmp_path / "90-imgpipe-base.cfg").read_text() == BASE_CFG


def test_aws_import_publisher_asks_for_ec2_for_its_target_only(tmp_path):
    spec = write(
        tmp_path / "spec.yml",
        """\
imgpipe: 1
name: demo
targets:
  local: {builder: libvirt}
  other: {builder: libvirt}
publish:
  ami: {publisher: aws-import, from: local, import: {bucket: b}}
""",
    )
    loaded = load_spec(spec)
    assert cloud_datasources(loaded, "local") == ["Ec2"]
    assert cloud_datasources(loaded, "other") == []
