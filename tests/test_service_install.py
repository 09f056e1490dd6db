"""`horus service install|uninstall|status|failed` against stub launchctl, systemctl and systemd-analyze that
record their argv, with HOME in a temporary directory; and the real systemd-analyze where there is one."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from horus.cli import main
from horus.config.loader import referenced_variables
from horus.host_service import capture_environment, service_path
from horus.host_service_systemd import quote_argument, quote_assignment
from horus.testing import StubCommands

LAUNCHD_RUNNING = "gui/0/dev.horus.daemon = {\n\tstate = running\n\tpid = 4242\n}\n"
LAUNCHD_STOPPED = "gui/0/dev.horus.daemon = {\n\tstate = not running\n\tlast exit code = 1\n}\n"
SECRET = 'tok%en"with\\odd$chars'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "HORUS_STATE_DIR", "OPTIONAL_FLAG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOT_TOKEN", SECRET)
    return home


@pytest.fixture
def config(tmp_path: Path) -> Path:
    sent = tmp_path / "sent.jsonl"
    path = tmp_path / "horus.json"
    path.write_text(
        json.dumps(
            {
                "notify": [
                    {
                        "name": "phone",
                        # The token as $0, where the shell does not parse it.
                        "command": ["/bin/sh", "-c", f"cat >> {sent}; echo >> {sent}", "${BOT_TOKEN}"],
                    }
                ],
                "monitors": [
                    {
                        "name": "web",
                        "check": {"type": "port_open", "host": "127.0.0.1", "port": 9},
                        "heal": {"action": "run_script", "command": ["echo", "${OPTIONAL_FLAG:-off}"]},
                    }
                ],
            }
        )
    )
    return path


@pytest.fixture
def launchctl(stubs: StubCommands) -> StubCommands:
    stubs.install("launchctl")
    stubs.reply_when("launchctl", ["print"], stdout=LAUNCHD_RUNNING)
    return stubs


@pytest.fixture
def systemctl(stubs: StubCommands) -> StubCommands:
    stubs.install("systemctl")
    stubs.install("systemd-analyze")
    stubs.reply_when("systemctl", ["is-active"], stdout="active\n")
    stubs.reply_when("systemctl", ["show"], stdout="LoadState=loaded\nMainPID=4242\nResult=success\n")
    return stubs


def horus(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def install(config: Path, manager: str, *extra: str) -> Result:
    return horus("service", "install", "-c", str(config), "--user", "--manager", manager, "--settle", "0", *extra)


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_launchd_install_writes_a_plist_with_keepalive_and_the_environment_captured_then_loads_it(
    home: Path, config: Path, launchctl: StubCommands
) -> None:
    result = install(config, "launchd")

    assert result.exit_code == 0, result.output
    plist_path = home / "Library/LaunchAgents/dev.horus.daemon.plist"
    job = plistlib.loads(plist_path.read_bytes())
    assert job["Label"] == "dev.horus.daemon"
    assert job["ProgramArguments"][1:4] == ["run", "-c", str(config)]
    assert os.access(job["ProgramArguments"][0], os.X_OK)
    assert job["KeepAlive"] is True and job["RunAtLoad"] is True
    assert (job["ThrottleInterval"], job["ExitTimeOut"]) == (10, 30)
    assert job["EnvironmentVariables"]["PATH"] == service_path(os.environ["PATH"])[0]
    assert job["EnvironmentVariables"]["PATH"].split(":")[0] == str(launchctl.directory)
    assert job["EnvironmentVariables"]["BOT_TOKEN"] == SECRET
    assert "OPTIONAL_FLAG" not in job["EnvironmentVariables"]
    assert job["WorkingDirectory"] == str(config.parent)
    assert Path(job["StandardErrorPath"]).parent == home / "Library/Logs/horus"
    assert (home / "Library/Logs/horus").is_dir()
    assert plist_path.stat().st_mode & 0o077 == 0, "the plist holds tokens: only its owner may read it"
    label = f"gui/{os.getuid()}/dev.horus.daemon"
    assert [c for c in launchctl.calls("launchctl") if c[0] != "print"] == [
        ["bootout", label],  # the stub says the job is loaded already
        ["enable", label],
        ["bootstrap", f"gui/{os.getuid()}", str(plist_path)],
        ["kickstart", label],
    ]
    assert "environment captured for the service: PATH, BOT_TOKEN" in result.stdout
    assert "OPTIONAL_FLAG is not set now" in result.stderr
    assert "is running (pid 4242)" in result.stdout
    assert SECRET not in result.output


def test_systemd_install_writes_a_notify_unit_with_a_watchdog_and_a_failure_hook_then_enables_it(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    result = install(config, "systemd")

    assert result.exit_code == 0, result.output
    units = home / ".config/systemd/user"
    unit = (units / "horus.service").read_text()
    for directive in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=95",  # the LoopWatchdog (60 s + 5 s grace) ends a hung Horus first, with its record
        "Restart=always",
        "RestartSec=5",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "TimeoutStopSec=30",
        "OnFailure=horus-notify-failure@%n.service",
        f'Environment="PATH={service_path(os.environ["PATH"])[0]}"',
        quote_assignment("BOT_TOKEN", SECRET),
        "WantedBy=default.target",
    ):
        assert directive in unit.splitlines(), directive
    assert unit.index("StartLimitBurst") < unit.index("[Service]"), "start limits belong in [Unit]"
    hook = (units / "horus-notify-failure@.service").read_text()
    assert f"service failed -c {config} --user %i" in hook
    assert systemctl.calls("systemd-analyze")[0][0] == "verify"
    changes = [c for c in systemctl.calls("systemctl") if c[1] not in ("is-active", "show")]
    assert changes == [
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "horus.service"],
        ["--user", "restart", "horus.service"],  # the stub says it was running already
    ]
    assert "horus.service is running (pid 4242)" in result.stdout
    assert SECRET not in result.output


@pytest.mark.parametrize("manager", ["launchd", "systemd"])
def test_dry_run_prints_every_file_and_command_and_writes_and_runs_nothing(
    home: Path, config: Path, launchctl: StubCommands, systemctl: StubCommands, manager: str
) -> None:
    result = install(config, manager, "--dry-run")

    assert result.exit_code == 0, result.output
    assert files_under(home) == []
    assert launchctl.calls("launchctl") == systemctl.calls("systemctl") == systemctl.calls("systemd-analyze") == []
    if manager == "launchd":
        assert "<key>KeepAlive</key>" in result.stdout
        assert "launchctl bootstrap" in result.stdout
    else:
        assert "Type=notify" in result.stdout and "horus-notify-failure@.service" in result.stdout
        assert "systemctl --user enable --now horus.service" in result.stdout
    assert "BOT_TOKEN=***" in result.stdout or "<string>***</string>" in result.stdout
    assert SECRET not in result.output


@pytest.mark.parametrize("manager", ["launchd", "systemd"])
def test_a_config_that_does_not_load_exits_2_with_its_errors_and_nothing_written(
    home: Path, tmp_path: Path, launchctl: StubCommands, systemctl: StubCommands, manager: str
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"monitors": [{"name": "web", "check": {"type": "port_open", "port": 0}}]}))

    result = install(broken, manager)

    assert result.exit_code == 2
    assert "monitors[0] (web).check" in result.stderr
    assert files_under(home) == []
    assert launchctl.calls("launchctl") == systemctl.calls("systemctl") == []


def test_install_exits_1_with_a_sentence_when_the_service_does_not_stay_running(
    home: Path, config: Path, stubs: StubCommands
) -> None:
    stubs.install("launchctl")
    stubs.reply_when("launchctl", ["print"], stdout=LAUNCHD_STOPPED)

    result = install(config, "launchd", "--wait", "0.5")

    assert result.exit_code == 1
    assert f"gui/{os.getuid()}/dev.horus.daemon is not running 0.5 s after it was started" in result.stderr
    assert "state = not running, last exit 1" in result.stderr
    assert "Library/Logs/horus" in result.stderr


def test_a_step_the_manager_refuses_stops_the_install_with_its_words(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    systemctl.reply_when("systemctl", ["enable"], stderr="Failed to enable unit: Access denied\n", exit_code=1)

    result = install(config, "systemd")

    assert result.exit_code == 1
    assert "systemctl --user enable --now horus.service exited 1: Failed to enable unit: Access denied" in result.stderr
    assert not any(c[1] == "restart" for c in systemctl.calls("systemctl"))


def test_reinstalling_a_changed_service_keeps_a_backup_and_shows_the_change_without_secrets(
    home: Path, config: Path, systemctl: StubCommands, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert install(config, "systemd").exit_code == 0
    unit = home / ".config/systemd/user/horus.service"
    before = unit.read_text()
    monkeypatch.setenv("BOT_TOKEN", "a-new-token")

    again = install(config, "systemd")

    assert again.exit_code == 0, again.output
    assert (unit.with_name("horus.service.bak")).read_text() == before
    assert 'Environment="BOT_TOKEN=a-new-token"' in unit.read_text()
    assert f"replaced {unit}; the previous version is {unit}.bak" in again.stdout
    assert "a-new-token" not in again.output and SECRET not in again.output
    assert "unchanged" in install(config, "systemd").stdout


@pytest.mark.parametrize("manager", ["launchd", "systemd"])
def test_uninstall_unloads_the_service_and_removes_its_files(
    home: Path, config: Path, launchctl: StubCommands, systemctl: StubCommands, manager: str
) -> None:
    assert install(config, manager).exit_code == 0
    written = files_under(home / "Library/LaunchAgents") + files_under(home / ".config")
    assert written

    result = horus("service", "uninstall", "--user", "--manager", manager)

    assert result.exit_code == 0, result.output
    assert all(not path.exists() for path in written)
    for path in written:
        assert f"removed {path}" in result.stdout
    if manager == "launchd":
        assert launchctl.calls("launchctl")[-1] == ["bootout", f"gui/{os.getuid()}/dev.horus.daemon"]
    else:
        changes = [c for c in systemctl.calls("systemctl") if c[1] not in ("is-active", "show")]
        assert changes[-2:] == [["--user", "disable", "--now", "horus.service"], ["--user", "daemon-reload"]]


@pytest.mark.parametrize("manager", ["launchd", "systemd"])
def test_status_exits_0_while_running_and_1_when_not(
    home: Path, config: Path, stubs: StubCommands, manager: str
) -> None:
    stubs.install("launchctl")
    stubs.install("systemctl")
    stubs.reply_when("launchctl", ["print"], stdout=LAUNCHD_RUNNING)
    stubs.reply_when("systemctl", ["is-active"], stdout="active\n")
    stubs.reply_when("systemctl", ["show"], stdout="LoadState=loaded\nMainPID=4242\n")

    running = horus("service", "status", "--user", "--manager", manager)
    assert running.exit_code == 0, running.output
    assert "running (pid 4242)" in running.stdout
    assert "not installed" in running.stdout

    stubs.install("launchctl", stderr="Could not find service in domain\n", exit_code=113)
    stubs.install("systemctl")
    stubs.reply_when("systemctl", ["is-active"], stdout="inactive\n", exit_code=3)
    stubs.reply_when("systemctl", ["show"], stdout="LoadState=not-found\nMainPID=0\n")
    stopped = horus("service", "status", "--user", "--manager", manager)
    assert stopped.exit_code == 1
    assert "not loaded" in stopped.stdout


def test_service_failed_tells_the_operator_through_the_configured_channels(home: Path, config: Path) -> None:
    result = horus("service", "failed", "-c", str(config), "--user", "horus.service")

    assert result.exit_code == 0, result.output
    assert "told phone" in result.stdout
    sent = json.loads((config.parent / "sent.jsonl").read_text().strip())
    text = json.dumps(sent)
    assert "Horus itself failed" in text and "horus.service" in text and "journalctl --user -u horus.service" in text
    assert '"horus_failed"' in text, text


def test_only_the_config_variables_that_are_set_are_captured_and_defaults_are_reported_missing() -> None:
    text = "a: ${SET_ONE}\nb: ${UNSET_WITH_DEFAULT:-x}\nc: ${SET_ONE:-y}\nd: ${MULTILINE}"
    assert referenced_variables(text) == {"SET_ONE": False, "UNSET_WITH_DEFAULT": True, "MULTILINE": False}

    captured = capture_environment(text, {"PATH": "/opt/homebrew/bin:/usr/bin", "SET_ONE": "1", "MULTILINE": "a\nb"})

    assert captured.variables == {"PATH": "/opt/homebrew/bin:/usr/bin", "SET_ONE": "1"}
    assert captured.missing == ("UNSET_WITH_DEFAULT",)
    assert captured.unusable == ("MULTILINE",)


def test_the_service_path_keeps_each_absolute_directory_once_and_leaves_relative_ones_out() -> None:
    captured = capture_environment("", {"PATH": "/opt/homebrew/bin:.:/usr/bin::~/bin:/opt/homebrew/bin"})

    assert captured.variables["PATH"] == "/opt/homebrew/bin:/usr/bin"
    assert captured.dropped_path_entries == (".", "(empty)", "~/bin")


def test_exec_arguments_are_quoted_so_systemd_expands_nothing() -> None:
    assert quote_argument("/usr/bin/horus") == "/usr/bin/horus"
    assert quote_argument("/a b/100%/$HOME") == '"/a b/100%%/$$HOME"'
    assert quote_assignment("K", 'v"\\%') == 'Environment="K=v\\"\\\\%%"'


REAL_ANALYZE = shutil.which("systemd-analyze", path="/usr/bin:/bin:/usr/local/bin")


@pytest.mark.skipif(REAL_ANALYZE is None, reason="systemd-analyze is not installed on this machine")
def test_the_real_systemd_analyze_accepts_the_unit_even_with_awkward_paths_and_values(
    home: Path, tmp_path: Path, stubs: StubCommands
) -> None:
    awkward = tmp_path / "my configs 100%"
    awkward.mkdir()
    config = awkward / "horus.json"
    check = {"type": "file_exists", "path": "/tmp/${BOT_TOKEN}"}  # a captured value full of quotes and %
    config.write_text(json.dumps({"monitors": [{"name": "x", "check": check}]}))
    stubs.install("systemctl")
    stubs.reply_when("systemctl", ["is-active"], stdout="active\n")
    stubs.reply_when("systemctl", ["show"], stdout="MainPID=7\n")
    assert REAL_ANALYZE is not None
    # The real one, found through a link among the stubs: the install runs whatever is first on PATH.
    (stubs.directory / "systemd-analyze").symlink_to(REAL_ANALYZE)

    result = install(config, "systemd")

    assert result.exit_code == 0, result.output
    assert "the unit passed systemd-analyze verify" in result.stdout
    units = home / ".config/systemd/user"
    verified = subprocess.run(
        [REAL_ANALYZE, "verify", str(units / "horus.service")], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and "horus" not in verified.stderr, verified.stderr


@pytest.mark.skipif(REAL_ANALYZE is None, reason="systemd-analyze is not installed on this machine")
def test_a_unit_that_systemd_analyze_rejects_is_not_written(
    home: Path, config: Path, stubs: StubCommands, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubs.install("systemctl")
    assert REAL_ANALYZE is not None
    (stubs.directory / "systemd-analyze").symlink_to(REAL_ANALYZE)
    # A Horus that is not there: verify rejects an ExecStart= that cannot be executed.
    monkeypatch.setattr("horus.cli_service.horus_command", lambda: ["/nonexistent/horus"])

    result = install(config, "systemd")

    assert result.exit_code == 1
    assert "nothing was written: systemd-analyze verify rejected the unit" in result.stderr
    assert "/nonexistent/horus" in result.stderr
    assert files_under(home) == []
    assert stubs.calls("systemctl") == []


def test_the_job_runs_horus_with_nothing_but_the_environment_its_plist_gives_it(
    home: Path, config: Path, launchctl: StubCommands, short_dir: Path
) -> None:
    """What a job gets is the plist: a Horus started from it alone loads its config and says READY=1."""
    assert install(config, "launchd").exit_code == 0
    job = plistlib.loads((home / "Library/LaunchAgents/dev.horus.daemon.plist").read_bytes())
    notify_path = str(short_dir / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as supervisor:
        supervisor.bind(notify_path)
        supervisor.settimeout(30)
        # launchd adds HOME (and USER, SHELL, TMPDIR) to a job's own variables; nothing of this shell's.
        environment = {**job["EnvironmentVariables"], "HOME": str(home), "NOTIFY_SOCKET": notify_path}
        process = subprocess.Popen(
            job["ProgramArguments"],
            env=environment,
            cwd=job["WorkingDirectory"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            said = b""
            while b"READY=1" not in said:
                try:
                    said += supervisor.recv(4096) + b"\n"
                except TimeoutError:
                    process.kill()
                    pytest.fail(f"no READY=1 within 30 s: {process.communicate()[1].decode()[-2000:]}")
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]


@pytest.mark.parametrize(
    ("manager", "expected"),
    [
        ("launchd", ["/Library/LaunchDaemons/dev.horus.daemon.plist", "launchctl bootstrap system ", "/var/log/horus"]),
        ("systemd", ["/etc/systemd/system/horus.service", "WantedBy=multi-user.target", "systemctl enable --now"]),
    ],
)
def test_a_system_service_goes_where_the_manager_looks_for_system_services(
    home: Path, config: Path, stubs: StubCommands, manager: str, expected: list[str]
) -> None:
    result = horus("service", "install", "-c", str(config), "--system", "--manager", manager, "--dry-run")

    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.stdout, text


def test_a_name_that_is_not_a_plain_service_name_is_refused(home: Path, config: Path, stubs: StubCommands) -> None:
    result = install(config, "systemd", "--name", "../../etc/evil")

    assert result.exit_code == 2
    assert "is not a service name" in result.output
    assert files_under(home) == []


def test_a_named_install_names_its_unit_and_failure_hook_after_it(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    result = install(config, "systemd", "--name", "horus-lab")

    assert result.exit_code == 0, result.output
    unit = (home / ".config/systemd/user/horus-lab.service").read_text()
    assert "OnFailure=horus-lab-notify-failure@%n.service" in unit
    assert (home / ".config/systemd/user/horus-lab-notify-failure@.service").exists()


def horus_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real horus command, bounded: a step that blocks fails the test instead of hanging it."""
    horus_script = Path(os.path.abspath(sys.executable)).with_name("horus")
    return subprocess.run([str(horus_script), *args], capture_output=True, text=True, timeout=15)


@pytest.mark.parametrize(
    ("manager", "taken"),
    [("launchd", "Library/LaunchAgents/dev.horus.daemon.plist"), ("systemd", ".config/systemd/user/horus.service")],
)
def test_a_fifo_where_the_service_file_goes_stops_the_install_at_once_with_nothing_run(
    home: Path, config: Path, launchctl: StubCommands, systemctl: StubCommands, manager: str, taken: str
) -> None:
    fifo = home / taken
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)

    result = horus_process("service", "install", "-c", str(config), "--user", "--manager", manager, "--settle", "0")

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{fifo} exists and is not a regular file" in result.stderr
    assert "Traceback" not in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    changes = [c for c in launchctl.calls("launchctl") + systemctl.calls("systemctl") if "print" not in c]
    assert [c for c in changes if c[1:2] not in (["is-active"], ["show"])] == []


def test_a_failure_hook_that_cannot_be_written_leaves_the_unit_as_it_was(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    units = home / ".config/systemd/user"
    units.mkdir(parents=True)
    (units / "horus.service").write_text("# the operator's own unit\n")
    (units / "horus-notify-failure@.service").mkdir()

    result = install(config, "systemd")

    assert result.exit_code == 1
    assert f"{units / 'horus-notify-failure@.service'} exists and is not a regular file" in result.stderr
    assert (units / "horus.service").read_text() == "# the operator's own unit\n"
    assert not (units / "horus.service.bak").exists()
    assert [c for c in systemctl.calls("systemctl") if c[1] not in ("is-active", "show")] == []


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs with room for the two unit directories and one file: the failure hook's write finds it full."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=4", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        (mount_point / "systemd/user").mkdir(parents=True)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_disk_full_after_the_unit_is_written_removes_it_again_and_names_the_file(
    home: Path, config: Path, systemctl: StubCommands, tiny_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tiny_filesystem))

    result = install(config, "systemd")

    assert result.exit_code == 1
    hook = tiny_filesystem / "systemd/user/horus-notify-failure@.service"
    assert f"cannot write {hook}: No space left on device" in result.stderr
    assert "None" not in result.stderr
    assert list((tiny_filesystem / "systemd/user").iterdir()) == [], "half an install is not left behind"
    assert [c for c in systemctl.calls("systemctl") if c[1] not in ("is-active", "show")] == []


@pytest.mark.parametrize(
    ("manager", "path", "content"),
    [
        ("systemd", ".config/systemd/user/horus.service", b"[Service]\nExecStart=/usr/bin/my-own-horus\n"),
        (
            "launchd",
            "Library/LaunchAgents/dev.horus.daemon.plist",
            plistlib.dumps({"Label": "dev.horus.daemon", "ProgramArguments": ["/usr/local/bin/something-else"]}),
        ),
    ],
)
def test_uninstall_leaves_a_service_file_it_did_not_write_and_stops_nothing(
    home: Path, launchctl: StubCommands, systemctl: StubCommands, manager: str, path: str, content: bytes
) -> None:
    theirs = home / path
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(content)

    result = horus("service", "uninstall", "--user", "--manager", manager)

    assert result.exit_code == 1
    assert f"{theirs} was not written by `horus service install`" in result.stderr
    assert "nothing was stopped or removed" in result.stderr
    assert theirs.read_bytes() == content
    changes = [c for c in launchctl.calls("launchctl") + systemctl.calls("systemctl") if "print" not in c]
    assert [c for c in changes if c[1:2] not in (["is-active"], ["show"])] == []


def test_uninstall_with_a_directory_where_the_unit_goes_says_so_without_a_traceback(
    home: Path, systemctl: StubCommands
) -> None:
    unit = home / ".config/systemd/user/horus.service"
    unit.mkdir(parents=True)

    result = horus("service", "uninstall", "--user", "--manager", "systemd")

    assert result.exit_code == 1
    assert f"{unit} exists and is not a regular file" in result.stderr
    assert unit.is_dir()


def test_a_dry_run_says_the_install_would_stop_where_the_real_one_would(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    unit = home / ".config/systemd/user/horus.service"
    unit.mkdir(parents=True)

    result = install(config, "systemd", "--dry-run")

    assert result.exit_code == 1
    assert f"nothing was written: {unit} exists and is not a regular file" in result.stderr
    assert "would replace" not in result.stdout


def test_status_does_not_call_a_file_horus_did_not_write_installed(home: Path, systemctl: StubCommands) -> None:
    unit = home / ".config/systemd/user/horus.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/someone-elses\n")

    result = horus("service", "status", "--user", "--manager", "systemd")

    assert not any(line.startswith("installed:") for line in result.stdout.splitlines())
    assert f"not installed: {unit} was not written by `horus service install`" in result.stdout


def test_a_config_path_with_a_newline_is_refused_for_a_unit_rather_than_adding_lines_to_it(
    home: Path, config: Path, tmp_path: Path, systemctl: StubCommands
) -> None:
    odd = tmp_path / "configs\n[Service]\nExecStartPre=/bin/touch pwned\n#"
    odd.mkdir(parents=True)
    moved = odd / "horus.json"
    moved.write_text(config.read_text())

    for extra in ((), ("--dry-run",)):
        result = install(moved, "systemd", *extra)

        assert result.exit_code == 1, result.output
        assert "nothing was written: the config's path holds a line break, which a systemd unit cannot carry" in (
            result.stderr
        )
        assert "ExecStartPre" not in result.stdout
    assert files_under(home) == []


def test_a_variable_holding_a_control_character_is_left_out_by_name_and_the_rest_installed(
    home: Path, config: Path, launchctl: StubCommands, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_TOKEN", "tok\x01en")

    result = install(config, "launchd")

    assert result.exit_code == 0, result.output
    assert "warning: BOT_TOKEN holds a line break, a control character or bytes that are not UTF-8" in result.stderr
    job = plistlib.loads((home / "Library/LaunchAgents/dev.horus.daemon.plist").read_bytes())
    assert "BOT_TOKEN" not in job["EnvironmentVariables"]


def test_a_config_path_with_a_control_character_is_refused_for_a_plist_in_words(
    home: Path, config: Path, tmp_path: Path, launchctl: StubCommands
) -> None:
    odd = tmp_path / "horus\x01.json"
    odd.write_text(config.read_text())

    result = install(odd, "launchd")

    assert result.exit_code == 1
    assert "nothing was written: the config's path holds a control character, which a plist cannot carry" in (
        result.stderr
    )
    assert files_under(home / "Library") == []


@pytest.mark.parametrize("manager", ["launchd", "systemd"])
def test_a_variable_or_a_config_path_that_is_not_utf8_is_named_not_a_codec_error(
    home: Path,
    config: Path,
    tmp_path: Path,
    launchctl: StubCommands,
    systemctl: StubCommands,
    monkeypatch: pytest.MonkeyPatch,
    manager: str,
) -> None:
    monkeypatch.setenv("BOT_TOKEN", os.fsdecode(b"tok\xffen"))
    result = install(config, manager)

    assert result.exit_code == 0, result.output
    assert "warning: BOT_TOKEN holds a line break, a control character or bytes that are not UTF-8" in result.stderr
    assert "codec" not in result.output

    odd = Path(os.fsdecode(bytes(tmp_path) + b"/horus-\xff.json"))
    odd.write_text(config.read_text())
    refused = install(odd, manager)

    assert refused.exit_code == 1
    assert "the config's path holds bytes that are not UTF-8, which a" in refused.stderr
    assert "codec" not in refused.output


def test_a_backup_that_cannot_be_written_is_named_and_the_unit_left_as_it_was(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    units = home / ".config/systemd/user"
    units.mkdir(parents=True)
    (units / "horus.service").write_text("# Written by `horus service install`; an older one\n")
    (units / "horus.service.bak").mkdir()

    result = install(config, "systemd")

    assert result.exit_code == 1
    assert f"cannot write {units / 'horus.service.bak'}: Is a directory; nothing was changed" in result.stderr
    assert (units / "horus.service").read_text() == "# Written by `horus service install`; an older one\n"


def test_a_systemd_name_with_an_at_sign_is_refused_since_its_failure_hook_would_name_another_template(
    home: Path, config: Path, systemctl: StubCommands
) -> None:
    result = install(config, "systemd", "--name", "horus@lab")

    assert result.exit_code == 1
    assert "nothing was written: a systemd unit named horus@lab is an instance of the template horus@" in (
        result.stderr
    )
    assert files_under(home) == []


def test_a_horus_that_launchd_keeps_restarting_is_not_called_running(
    home: Path, config: Path, stubs: StubCommands
) -> None:
    # launchctl print answers "running" with a new pid each time: KeepAlive restarting a Horus that dies at once.
    stubs.install("launchctl")
    counter = stubs.directory / "pid-counter"
    counter.write_text("100")
    launchctl = stubs.directory / "launchctl"
    launchctl.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = print ]; then\n'
        f'  pid=$(( $(cat "{counter}") + 1 )); echo "$pid" > "{counter}"\n'
        '  printf "gui/0/dev.horus.daemon = {\\n\\tstate = running\\n\\tpid = %s\\n}\\n" "$pid"\n'
        "fi\n"
    )

    result = horus(
        "service", "install", "-c", str(config), "--user", "--manager", "launchd", "--wait", "1", "--settle", "0.5"
    )

    assert result.exit_code == 1, result.output
    assert "is running (pid" not in result.stdout
    assert "did not keep one pid for 0.5 s" in result.stderr


def test_a_reinstall_whose_bootstrap_fails_says_horus_is_not_running_now_and_where_the_old_plist_is(
    home: Path, config: Path, stubs: StubCommands, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubs.install("launchctl")
    stubs.reply_when("launchctl", ["print"], stdout=LAUNCHD_RUNNING)
    assert install(config, "launchd").exit_code == 0
    monkeypatch.setenv("BOT_TOKEN", "a-new-token")
    # The old job is gone (booted out, or crashed), and launchd refuses the new one.
    stubs.install("launchctl")
    stubs.reply_when("launchctl", ["bootstrap"], stderr="Bootstrap failed: 5: Input/output error\n", exit_code=5)
    stubs.reply_when("launchctl", ["print"], stderr="Could not find service in domain\n", exit_code=113)

    result = install(config, "launchd")

    plist = home / "Library/LaunchAgents/dev.horus.daemon.plist"
    assert result.exit_code == 1
    assert "exited 5: Bootstrap failed: 5: Input/output error" in result.stderr
    assert (
        f"Horus is not running now (launchctl print gui/{os.getuid()}/dev.horus.daemon says: Could not find service "
        f"in domain); the previous {plist.name} is {plist}.bak"
    ) in result.stderr
