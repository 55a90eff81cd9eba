"""`imgpipe schedule` end to end through the real CLI: systemd units checked by the real
`systemd-analyze verify`, the cron.d entry, the CI workflows parsed as YAML, and `list`."""

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from croniter import croniter

from tests.conftest import IMGPIPE, REPO, write

SECRET_URL = "postgresql://imgpipe:s3cr3t-pw@db.example/imgpipe"
VENV_IMGPIPE = Path(sys.executable).parent / "imgpipe"  # the installed script, as users run it


def imgpipe(*args, command=IMGPIPE):
    env = {**os.environ, "IMGPIPE_CATALOG": SECRET_URL}
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True, env=env)


def spec(directory: Path, name: str, schedule: str = "") -> Path:
    block = f"schedule: {schedule}\n" if schedule else ""
    return write(
        directory / f"{name}.yml",
        f"imgpipe: 1\nname: {name}\n{block}targets: {{local: {{builder: libvirt}}}}\n",
    )


@pytest.fixture
def specs(tmp_path):
    directory = tmp_path / "specs dir"  # a space: quoting in units and cron lines is exercised
    spec(directory, "web", "{cron: '0 3 * * *', timezone: Europe/Berlin}")
    spec(directory, "db", "{cron: '*/15 1-5 * * mon-fri', timezone: Asia/Tokyo}")
    spec(directory, "misc")
    return directory


def verify(*units: Path) -> subprocess.CompletedProcess:
    """systemd-analyze verify on unit files by path (systemd is not PID 1 here: no
    generators, no man pages). It exits 0 on lines it ignores, so its output counts too."""
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no", *map(str, units)],
        capture_output=True,
        text=True,
    )


def test_systemd_units_pass_systemd_analyze_verify(specs, tmp_path):
    root = tmp_path / "root"
    out = imgpipe(
        "schedule", "install", str(specs), "--systemd", "--root", str(root), command=[str(VENV_IMGPIPE)]
    )
    assert out.returncode == 0, out.stderr
    unit_dir = root / "etc/systemd/system"
    service, timer = unit_dir / "imgpipe-nightly.service", unit_dir / "imgpipe-nightly.timer"
    assert f"wrote {service}" in out.stdout and f"wrote {timer}" in out.stdout
    assert "systemctl enable --now imgpipe-nightly.timer" in out.stdout
    assert "misc.yml" in out.stdout  # the spec without a schedule: every run
    checked = verify(timer, service)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr

    text = service.read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0] == str(VENV_IMGPIPE)
    assert argv[1:] == [
        "nightly",
        str(specs.resolve()),
        "--output",
        str(specs.resolve() / "output"),
        "--report",
        str(specs.resolve() / "output" / "nightly-report.json"),
    ]
    assert f"WorkingDirectory={specs.resolve()}\n" in text
    assert "EnvironmentFile=-/etc/imgpipe/nightly.env" in text and "Type=oneshot" in text
    calendars = [line for line in timer.read_text().splitlines() if line.startswith("OnCalendar=")]
    assert calendars == [
        "OnCalendar=Mon..Fri *-*-* 01..05:00/15:00 Asia/Tokyo",
        "OnCalendar=*-*-* 03:00:00 Europe/Berlin",
    ]
    assert "Persistent=true" in timer.read_text() and "WantedBy=timers.target" in timer.read_text()
    env_file = root / "etc/imgpipe/nightly.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(service.stat().st_mode) == 0o644
    for written in (service, timer, env_file):
        assert SECRET_URL not in written.read_text() and "s3cr3t" not in written.read_text()


def test_the_verify_check_catches_broken_units(specs, tmp_path):
    """The check above is real: a bad calendar and a missing executable both fail it."""
    root = tmp_path / "root"
    assert imgpipe("schedule", "install", str(specs), "--systemd", "--root", str(root)).returncode == 0
    unit_dir = root / "etc/systemd/system"
    service, timer = unit_dir / "imgpipe-nightly.service", unit_dir / "imgpipe-nightly.timer"
    exec_start = next(line for line in service.read_text().splitlines() if line.startswith("ExecStart="))
    assert Path(shlex.split(exec_start.removeprefix("ExecStart="))[0]).is_file()  # python -m imgpipe.cli
    good = verify(timer, service)
    assert good.returncode == 0 and good.stdout + good.stderr == ""

    bad_calendar = timer.read_text().replace("03:00:00 Europe", "27:00:00 Europe")
    calendar = verify(
        write(tmp_path / "calendar" / timer.name, bad_calendar),
        write(tmp_path / "calendar" / service.name, service.read_text()),
    )
    assert "Failed to parse calendar specification" in calendar.stdout + calendar.stderr
    no_exec = service.read_text().replace(exec_start, "ExecStart=/nonexistent/imgpipe")
    not_executable = verify(
        write(tmp_path / "exec" / timer.name, timer.read_text()),
        write(tmp_path / "exec" / service.name, no_exec),
    )
    assert not_executable.returncode != 0 and "/nonexistent/imgpipe" in not_executable.stderr


def test_install_never_overwrites_a_changed_file_without_force(specs, tmp_path):
    root = tmp_path / "root"
    args = ("schedule", "install", str(specs), "--systemd", "--root", str(root))
    assert imgpipe(*args).returncode == 0
    timer = root / "etc/systemd/system/imgpipe-nightly.timer"
    env_file = write(root / "etc/imgpipe/nightly.env", f"IMGPIPE_CATALOG={SECRET_URL}\n")
    env_file.chmod(0o644)
    timer.write_text(timer.read_text() + "# edited by hand\n")
    again = imgpipe(*args)
    assert again.returncode == 2 and "already exists with other content" in again.stderr
    assert "Traceback" not in again.stderr and timer.read_text().endswith("# edited by hand\n")
    forced = imgpipe(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"replaced {timer}" in forced.stdout and not timer.read_text().endswith("# edited by hand\n")
    assert env_file.read_text() == f"IMGPIPE_CATALOG={SECRET_URL}\n"  # secrets are never replaced
    assert "readable by other users (mode 0644)" in forced.stderr
    same = imgpipe(*args)
    assert same.returncode == 0 and f"unchanged {timer}" in same.stdout


def test_without_any_schedule_the_timer_runs_daily_and_says_so(tmp_path):
    spec(tmp_path / "specs", "misc")
    out = imgpipe("schedule", "install", str(tmp_path / "specs"), "--systemd", "--print")
    assert out.returncode == 0, out.stderr
    assert "OnCalendar=*-*-* 03:00:00\n" in out.stdout and "no spec has a schedule" in out.stdout


def test_cron_entry_has_five_fields_user_and_a_command_sh_can_parse(specs, tmp_path):
    out = imgpipe("schedule", "install", str(specs), "--cron", "--print")
    assert out.returncode == 0, out.stderr
    zone, entries = "", []
    for line in out.stdout.splitlines():
        if line.startswith("CRON_TZ="):
            zone = line.removeprefix("CRON_TZ=")
        elif line and not line.startswith("#") and "=" not in line.split()[0]:
            fields = line.split(None, 6)
            entries.append((zone, " ".join(fields[:5]), fields[5], fields[6]))
    assert [(z, when) for z, when, _, _ in entries] == [
        ("Asia/Tokyo", "*/15 1-5 * * 1-5"),
        ("Europe/Berlin", "0 3 * * *"),
    ]
    for _zone, when, user, command in entries:
        assert croniter.is_valid(when) and user == "root"
        parsed = subprocess.run(
            ["sh", "-n", "-c", command.replace("\\%", "%")], capture_output=True, text=True
        )
        assert parsed.returncode == 0, parsed.stderr
        argv = shlex.split(command.replace("\\%", "%"))
        assert argv[:2] == ["cd", str(specs.resolve())]
        assert argv[argv.index("nightly") + 1] == str(specs.resolve())
        assert ". /etc/imgpipe/nightly.env" in command
    root = tmp_path / "root"
    installed = imgpipe("schedule", "install", str(specs), "--cron", "--root", str(root))
    assert installed.returncode == 0, installed.stderr
    cron_file = root / "etc/cron.d/imgpipe-nightly"
    assert stat.S_IMODE(cron_file.stat().st_mode) == 0o644
    assert cron_file.read_text() == out.stdout.split("\n", 1)[1].removesuffix("\n")
    assert SECRET_URL not in cron_file.read_text()


def test_github_actions_workflow(specs):
    out = imgpipe("schedule", "export", str(specs), "--github-actions")
    assert out.returncode == 0, out.stderr
    assert SECRET_URL not in out.stdout
    doc = yaml.safe_load(out.stdout)
    assert "on" in doc and True not in doc  # quoted: a bare `on` would load as True
    crons = [entry["cron"] for entry in doc["on"]["schedule"]]
    assert all(len(c.split()) == 5 and croniter.is_valid(c) for c in crons)
    assert "0 1,2 * * *" in crons  # 03:00 Berlin: 01:00 UTC in summer, 02:00 in winter
    assert "*/15 16-20 * * 0-4" in crons  # Tokyo is UTC+9: Mon-Fri 01:00 is Sun-Thu 16:00 UTC
    assert "workflow_dispatch" in doc["on"]
    job = doc["jobs"]["nightly"]
    assert job["runs-on"] == ["self-hosted", "linux", "kvm"]
    assert job["env"]["IMGPIPE_CATALOG"] == "${{ secrets.IMGPIPE_CATALOG }}"
    uses = [step.get("uses", "") for step in job["steps"]]
    assert uses[0].startswith("actions/checkout@") and any(
        u.startswith("actions/upload-artifact@") for u in uses
    )
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert any(
        r.startswith("./run imgpipe nightly") and "--report nightly-report.json --json" in r for r in runs
    )
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "nightly-report.json" and upload["if"] == "always()"
    assert "(DST): the times under each; nightly bakes it when due" in out.stdout  # the comment


def test_gitlab_ci_job(specs):
    out = imgpipe("schedule", "export", str(specs), "--gitlab-ci", "--runner", "kvm")
    assert out.returncode == 0, out.stderr
    assert SECRET_URL not in out.stdout
    job = yaml.safe_load(out.stdout)["imgpipe-nightly"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}] and job["tags"] == ["kvm"]
    assert any("imgpipe nightly" in line and "--report nightly-report.json" in line for line in job["script"])
    assert any("$IMGPIPE_CATALOG" in line for line in job["script"])
    assert job["artifacts"]["paths"] == ["nightly-report.json"]
    assert "cron: '0 3 * * *'  cron_timezone: Europe/Berlin" in out.stdout
    assert "masked" in out.stdout


def test_list_shows_next_due_in_the_zone_and_in_utc(specs):
    out = imgpipe("schedule", "list", str(specs), "--after", "2025-01-01T00:00:00+00:00")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "2025-01-01 03:00 CET" in rows["web.yml"] and "2025-01-01 02:00 UTC" in rows["web.yml"]
    # 2025-01-01 00:00 UTC is 09:00 on Wednesday in Tokyo: past that day's 01:00-05:45
    assert "2025-01-02 01:00 JST" in rows["db.yml"] and "2025-01-01 16:00 UTC" in rows["db.yml"]
    assert "every run" in rows["misc.yml"]
    doc = json.loads(
        imgpipe("schedule", "list", str(specs), "--json", "--after", "2025-07-01T00:00:00Z").stdout
    )
    web = next(s for s in doc["specs"] if s["name"] == "web")
    assert doc["v"] == 1 and web["next_due"] == "2025-07-01T03:00:00+02:00"
    assert web["next_due_utc"] == "2025-07-01T01:00:00+00:00"


def test_bad_input_is_exit_2_with_a_located_message(specs, tmp_path):
    neither = imgpipe("schedule", "install", str(specs))
    assert neither.returncode == 2 and "exactly one of --systemd or --cron" in neither.stderr
    bad = tmp_path / "bad"
    path = spec(bad, "x", "{cron: '0 3 15W * *'}")
    out = imgpipe("schedule", "install", str(bad), "--systemd", "--print")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{path}:3:18: schedule.cron: '0 3 15W * *' cannot be written as systemd OnCalendar=" in out.stderr
