"""`horus doctor` and the doctor check as an operator meets them: real files in a temporary directory (a bot's
source, its .env and compose file, a plist written with plistlib, a systemd unit), the real horus command as a
subprocess, and each finding asserted by its sentence."""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from horus.config.loader import load_config
from horus.doctor import Host, Subject, run_audits
from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = Path(sys.executable).with_name("horus")
PYTHON = sys.executable

BOT = """\
import os

KEY = os.environ["EXCHANGE_KEY"]
LEVEL = os.getenv("LOG_LEVEL", "info")
REDIS = os.environ.get("REDIS_URL")
"""


def horus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HORUS), *args], capture_output=True, text=True, timeout=60, env=env)


def write_plist(path: Path, **job: Any) -> Path:
    with path.open("wb") as f:
        plistlib.dump({"Label": "com.example.bot", **job}, f)
    return path


def write_config(tmp_path: Path, *monitors: dict[str, Any]) -> Path:
    config = tmp_path / "horus.json"
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": list(monitors)}))
    return config


def lines_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def bot(tmp_path: Path) -> Path:
    """A bot's source dir, as it ran under Docker Compose: bot.py, a .env and a compose file."""
    source = tmp_path / "bot"
    source.mkdir()
    (source / "bot.py").write_text(BOT)
    (source / ".env").write_text("# secrets\nEXCHANGE_KEY=abc\nexport API_SECRET=xyz\n")
    (source / "docker-compose.yml").write_text(
        textwrap.dedent(
            """\
            services:
              bot:
                image: bot:latest
                environment:
                  - DB_URL=postgres://db/bot
                  - EXCHANGE_KEY
            """
        )
    )
    (tmp_path / "logs").mkdir()
    return source


def launchd_monitor(source: Path, plist: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "bot",
        "check": {"type": "log_staleness", "log_file": str(source.parent / "logs" / "bot.log"), "max_age_seconds": 60},
        "service": {"source_dir": str(source), "plist": str(plist)},
        **extra,
    }


def test_every_variable_the_code_env_and_compose_read_but_the_plist_lacks_is_a_finding(
    tmp_path: Path, bot: Path
) -> None:
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=[PYTHON, str(bot / "bot.py")],
        EnvironmentVariables={"EXCHANGE_KEY": "k"},
    )
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert result.returncode == 1, result.stdout + result.stderr
    fix = f"add it under EnvironmentVariables in {plist}"
    assert lines_of(result) == [
        "bot:",
        f"problem: the service reads REDIS_URL (bot.py line 5) but its plist does not set it: {fix}",
        f"problem: API_SECRET is set for the service in .env but its plist does not set it: {fix}",
        "problem: DB_URL is set for the service in compose service bot's environment: but its plist does not set "
        f"it: {fix}",
        "warning: the service reads LOG_LEVEL (bot.py line 4, with a default) but its plist does not set it, so it "
        f"runs with the default: {fix} if the default is not what it should run with",
        "3 problems and 1 warning in 1 monitor audited",
    ]
    assert result.stderr == ""


def test_a_setup_that_passes_everything_says_no_findings(tmp_path: Path, bot: Path) -> None:
    every = {"EXCHANGE_KEY": "k", "LOG_LEVEL": "debug", "REDIS_URL": "redis://", "API_SECRET": "s", "DB_URL": "pg"}
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=[PYTHON, str(bot / "bot.py")],
        EnvironmentVariables=every,
        StandardOutPath=str(tmp_path / "logs" / "out.log"),
    )
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "no findings (1 monitor audited)"


def test_a_variable_read_in_the_code_is_named_with_every_place_it_comes_from(tmp_path: Path, bot: Path) -> None:
    (bot / ".env").write_text("EXCHANGE_KEY=abc\n")
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    config = write_config(tmp_path, launchd_monitor(bot, plist))
    result = horus("doctor", "-c", str(config), "--json")

    assert result.returncode == 1
    findings = {f["found"]: f for f in json.loads(result.stdout)}
    found = (
        "the service reads EXCHANGE_KEY (bot.py line 3; in .env; in compose service bot's environment:) but its "
        "plist does not set it"
    )
    assert findings[found]["severity"] == "problem"
    assert findings[found]["monitor"] == "bot"
    assert findings[found]["kind"] == "environment"


def test_a_systemd_unit_counts_environment_and_environment_file_and_the_compose_mapping_form(
    tmp_path: Path, bot: Path
) -> None:
    (bot / "docker-compose.yml").write_text(
        "services:\n  worker:\n    image: w\n  bot:\n    environment:\n      DB_URL: postgres://db\n      FEED: ws://\n"
    )
    env_file = tmp_path / "bot.env"
    env_file.write_text("API_SECRET=xyz\nREDIS_URL=redis://\n")
    unit = tmp_path / "bot.service"
    unit.write_text(
        textwrap.dedent(
            f"""\
            [Unit]
            Description=The bot

            [Service]
            ExecStart={PYTHON} {bot / "bot.py"}
            Environment="EXCHANGE_KEY=k" LOG_LEVEL=info \\
                DB_URL=pg
            EnvironmentFile={env_file}
            EnvironmentFile=-{tmp_path / "optional.env"}
            """
        )
    )
    monitor = {
        "name": "bot",
        "check": {"type": "port_open", "port": 9},
        "service": {"source_dir": str(bot), "unit": str(unit)},
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert result.returncode == 1, result.stdout
    assert lines_of(result) == [
        "bot:",
        "problem: FEED is set for the service in compose service bot's environment: but its unit does not set it: "
        f"add Environment=FEED=... under [Service] in {unit}, or put it in an EnvironmentFile=",
        "1 problem and 0 warnings in 1 monitor audited",
    ]


def test_a_plist_that_cannot_be_read_is_a_problem_not_a_traceback(tmp_path: Path, bot: Path) -> None:
    plist = tmp_path / "bot.plist"
    plist.write_text("<plist><dict><key>Label</key>")
    missing_unit = tmp_path / "gone.service"
    monitors = [
        launchd_monitor(bot, plist),
        {"name": "api", "check": {"type": "port_open", "port": 9}, "service": {"unit": str(missing_unit)}},
    ]
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)))

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    text = result.stdout
    assert f"problem: its plist {plist} cannot be read: it is not a valid plist" in text
    assert "fix or regenerate the plist; until then the service cannot be audited, nor started" in text
    assert (
        f"warning: its unit {missing_unit} does not exist, so the service's job was not audited: set service.unit to "
        "the file the job is installed from, or install the job"
    ) in text


def test_the_default_plist_is_the_launch_agent_of_the_monitors_launchd_label(tmp_path: Path) -> None:
    home = tmp_path / "home"
    agents = home / "Library" / "LaunchAgents"
    agents.mkdir(parents=True)
    source = tmp_path / "src"
    source.mkdir()
    (source / "bot.py").write_text('import os\nos.environ["EXCHANGE_KEY"]\n')
    write_plist(agents / "com.example.bot.plist", ProgramArguments=["/bin/sh"])
    monitor = {
        "name": "bot",
        "check": {"type": "launchd_service", "label": "com.example.bot"},
        "work_tree": str(source),
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)), env={**os.environ, "HOME": str(home)})

    assert (
        "problem: the service reads EXCHANGE_KEY (bot.py line 2) but its plist does not set it: add it under "
        f"EnvironmentVariables in {agents / 'com.example.bot.plist'}"
    ) in result.stdout, result.stdout


def test_links_out_of_the_source_tree_are_not_followed(tmp_path: Path, bot: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.py").write_text('import os\nos.environ["SOMEONE_ELSES"]\n')
    (bot / "other.py").symlink_to(elsewhere / "other.py")
    (bot / "inside.py").symlink_to(bot / "bot.py")
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert "SOMEONE_ELSES" not in result.stdout
    assert "the service reads REDIS_URL (bot.py line 5; inside.py line 5)" in result.stdout


@pytest.fixture
def shell_bin(tmp_path: Path) -> Path:
    """A directory on the shell's PATH only, as /opt/homebrew/bin is: it holds `botpython`."""
    directory = tmp_path / "shell-bin"
    directory.mkdir()
    program = directory / "botpython"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return directory


def test_a_program_found_only_on_the_shells_path_is_a_problem(tmp_path: Path, bot: Path, shell_bin: Path) -> None:
    script = bot / "run"
    script.write_text("#!/usr/bin/env botpython\nprint('hi')\n")
    script.chmod(0o755)
    plists = {
        "bare": write_plist(tmp_path / "bare.plist", ProgramArguments=["botpython", "bot.py"]),
        "script": write_plist(tmp_path / "script.plist", ProgramArguments=[str(script)]),
        "noexec": write_plist(tmp_path / "noexec.plist", ProgramArguments=[str(bot / "bot.py")]),
        "nowhere": write_plist(tmp_path / "nowhere.plist", ProgramArguments=["no-such-program-here"]),
        "fixed": write_plist(
            tmp_path / "fixed.plist",
            ProgramArguments=["botpython"],
            EnvironmentVariables={"PATH": f"{shell_bin}:/usr/bin:/bin"},
        ),
    }
    monitors = [
        {"name": name, "check": {"type": "port_open", "port": 9}, "service": {"plist": str(plist)}}
        for name, plist in plists.items()
    ]
    env = {**os.environ, "PATH": f"{shell_bin}:{os.environ['PATH']}"}
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)), env=env)
    text = result.stdout

    assert result.returncode == 1
    default = "launchd's default PATH (/usr/bin:/bin:/usr/sbin:/sbin), since its plist sets none"
    on_shell = shell_bin / "botpython"
    assert (
        f"problem: ProgramArguments[0] botpython is not on {default}, only on your shell's PATH (at {on_shell}): "
        f"use the full path {on_shell}, or add {shell_bin} to PATH under EnvironmentVariables in {plists['bare']}"
    ) in text
    assert (f"problem: the interpreter of {script} botpython is not on {default}, only on your shell's PATH") in text
    assert (
        f"problem: its plist's ProgramArguments[0] {bot / 'bot.py'} is not executable: make it executable "
        f"(chmod +x {bot / 'bot.py'}) or point ProgramArguments[0] at the right program"
    ) in text
    assert (
        f"problem: ProgramArguments[0] no-such-program-here of its plist is found nowhere (looked on {default}): "
        f"install it, or give its full path in {plists['nowhere']}"
    ) in text
    assert "fixed:" not in text


def test_paths_under_privacy_protected_folders_are_warnings_off_a_mac(tmp_path: Path) -> None:
    home = tmp_path / "home"
    documents = home / "Documents" / "bot"
    documents.mkdir(parents=True)
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=["/bin/sh", str(documents / "run.sh")],
        StandardErrorPath=str(documents / "err.log"),
    )
    monitor = {"name": "bot", "check": {"type": "port_open", "port": 9}, "service": {"plist": str(plist)}}
    config = write_config(tmp_path, monitor)
    result = horus("doctor", "-c", str(config), env={**os.environ, "HOME": str(home)})

    assert result.returncode == 0, result.stdout  # warnings only
    assert (
        f"warning: its plist's StandardErrorPath {documents / 'err.log'} is under ~/Documents, a privacy-protected "
        "folder: if this moves to a Mac, macOS will block a launchd job from it: move it out (to ~/Services, "
        "~/Library/Application Support or /usr/local/var, say), or grant the program Full Disk Access in System "
        "Settings > Privacy & Security"
    ) in result.stdout
    assert f"warning: its plist's ProgramArguments {documents / 'run.sh'} is under ~/Documents" in result.stdout


def test_on_a_mac_a_path_under_downloads_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "Downloads").mkdir()
    plist = write_plist(
        tmp_path / "bot.plist", ProgramArguments=["/bin/sh"], WorkingDirectory=str(tmp_path / "Downloads")
    )
    monitor = {"name": "bot", "check": {"type": "port_open", "port": 9}, "service": {"plist": str(plist)}}
    config = load_config(write_config(tmp_path, monitor))
    findings = run_audits(Subject.of_monitor(config.monitors[0]), Host(platform="darwin"), kinds=["privacy"])

    assert [(f.severity, f.found) for f in findings] == [
        (
            "problem",
            f"its plist's WorkingDirectory {tmp_path / 'Downloads'} is under ~/Downloads, a privacy-protected folder: "
            "macOS blocks a launchd job from it unless its program was granted access",
        )
    ]


def test_log_paths_the_jobs_user_cannot_write_are_problems(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    os.chmod(locked, 0o755)
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=["/bin/sh"],
        UserName="nobody",
        StandardOutPath=str(tmp_path / "no-such-dir" / "out.log"),
        StandardErrorPath=str(locked / "err.log"),
    )
    monitor = {"name": "bot", "check": {"type": "port_open", "port": 9}, "service": {"plist": str(plist)}}
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))
    missing = tmp_path / "no-such-dir"

    assert result.returncode == 1
    assert (
        f"problem: its plist's StandardOutPath {missing / 'out.log'} is in {missing}, which does not exist (and "
        f"neither launchd nor systemd creates it): create it: mkdir -p {missing} && chown nobody {missing}"
    ) in result.stdout
    # locked belongs to the user running the test, and only its owner may write it.
    assert (
        f"problem: its plist's StandardErrorPath {locked / 'err.log'} does not exist yet and nobody, the user the "
        f"service runs as, cannot create it in {locked}"
    ) in result.stdout


@pytest.fixture
def orphan() -> Iterator[subprocess.Popen[bytes]]:
    """A service started by hand: its parent is this test, no supervisor."""
    process = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(120)", "doctor-orphan-bot"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def looped(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A service under a shell restart loop, which starts it again when it is killed."""
    loop = f"while true; do {PYTHON} -c 'import time; time.sleep(120)' doctor-looped-bot; sleep 1; done"
    process = subprocess.Popen(["/bin/sh", "-c", loop], start_new_session=True)
    yield process
    os.killpg(process.pid, 9)
    process.wait()


def test_a_kill_process_heal_on_a_service_nothing_restarts_is_a_problem(
    tmp_path: Path, orphan: subprocess.Popen[bytes], looped: subprocess.Popen[bytes]
) -> None:
    def started(marker: str) -> bool:
        for process in psutil.process_iter():
            try:
                if marker in " ".join(process.cmdline()) and process.pid != os.getpid():
                    return True
            except psutil.Error:  # exited or a zombie meanwhile
                continue
        return False

    deadline = time.monotonic() + 30
    while not (started("doctor-orphan-bot") and started("doctor-looped-bot")):
        assert time.monotonic() < deadline, "the services did not start"
        time.sleep(0.05)  # polling the process table: there is no event to wait on
    monitors = [
        {
            "name": "orphan",
            "check": {"type": "process_alive", "process_pattern": "doctor-orphan-bot"},
            "heal": {"action": "kill_process", "process_pattern": "doctor-orphan-bot"},
        },
        {
            "name": "looped",
            "check": {"type": "process_alive", "process_pattern": "doctor-looped-bot"},
            "heal": {"action": "kill_process", "process_pattern": "doctor-looped-bot", "ignore_wrappers": True},
        },
    ]
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)))

    assert result.returncode == 1, result.stdout
    assert (
        f"problem: its heal stops pid {orphan.pid} (" in result.stdout
        and "which nothing restarts: its parent is pid" in result.stdout
        and "run the service under one (a launchd job with KeepAlive, a systemd unit with Restart=always, "
        "horus-runner), or heal with an action that starts it again"
        in result.stdout
    ), result.stdout
    assert "looped:" not in result.stdout


def _kill_process_monitor(name: str, marker: str) -> dict[str, Any]:
    return {
        "name": name,
        "check": {"type": "process_alive", "process_pattern": marker},
        "heal": {"action": "kill_process", "process_pattern": marker, "ignore_wrappers": True},
    }


@pytest.fixture
def process_tree() -> Iterator[Any]:
    """Starts a shell command in its own session, waits until a process with the marker runs, and kills the
    whole session at the end."""
    sessions: list[subprocess.Popen[bytes]] = []

    def start(command: str, marker: str, cwd: Path | None = None) -> psutil.Process:
        session = subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True, cwd=cwd)
        sessions.append(session)
        deadline = time.monotonic() + 30
        while True:
            for process in psutil.Process(session.pid).children(recursive=True):
                try:
                    if process.cmdline()[-1:] == [marker]:
                        return process
                except psutil.Error:  # exited meanwhile
                    continue
            assert time.monotonic() < deadline, f"{marker} did not start"
            time.sleep(0.05)  # polling the process table: there is no event to wait on

    yield start
    for session in sessions:
        os.killpg(session.pid, 9)
        session.wait()


def test_a_restart_loop_far_up_the_ancestry_does_not_restart_a_service_a_program_in_between_started(
    tmp_path: Path, process_tree: Any
) -> None:
    """A restart loop runs a program (a test runner, a tmux session, a CI job) that starts the bot and goes on
    running when the bot dies: the loop never sees the bot's death, so killing the bot stops it for good."""
    session = tmp_path / "session.py"
    session.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', 'doctor-session-bot'])\n"
        "time.sleep(120)\n"
    )
    bot = process_tree(f"while true; do {PYTHON} {session}; sleep 1; done", "doctor-session-bot")

    result = horus("doctor", "-c", str(write_config(tmp_path, _kill_process_monitor("bot", "doctor-session-bot"))))

    assert result.returncode == 1, result.stdout
    assert f"problem: its heal stops pid {bot.pid} (" in result.stdout, result.stdout
    assert f"which nothing restarts: its parent is pid {bot.ppid()} (python" in result.stdout, result.stdout
    assert "its death reaches no supervisor" in result.stdout, result.stdout


def test_a_loop_typed_into_an_interactive_shell_cannot_be_seen_and_the_finding_says_so(
    tmp_path: Path, process_tree: Any
) -> None:
    typed = f"while true; do {PYTHON} -c 'import time; time.sleep(120)' doctor-typed-bot; sleep 1; done"
    bot = process_tree(f'echo "{typed}" | sh -i 2>/dev/null', "doctor-typed-bot")

    result = horus("doctor", "-c", str(write_config(tmp_path, _kill_process_monitor("bot", "doctor-typed-bot"))))

    assert result.returncode == 1, result.stdout
    assert (
        f"its parent is pid {bot.ppid()} (sh), an interactive shell (a loop typed at its prompt cannot be seen "
        "from outside it: put the loop in a script or sh -c)" in result.stdout
    ), result.stdout


def test_a_restart_loop_counts_through_the_shells_and_wrappers_that_end_with_the_service(
    tmp_path: Path, process_tree: Any
) -> None:
    """The loop's child is a start script, or a shell running the service and then something else: when the
    service dies they end too, and the loop starts everything again."""
    (tmp_path / "start.sh").write_text(
        f"#!/bin/sh\ncd {tmp_path}\nenv LOG_LEVEL=info {PYTHON} -c 'import time; time.sleep(120)' doctor-script-bot\n"
        "echo 'the bot exited'\n"
    )
    (tmp_path / "forever.sh").write_text(
        f"#!/bin/sh\nuntil false; do\n  {PYTHON} -c 'import time; time.sleep(120)' doctor-file-loop-bot\n"
        "  sleep 1\ndone\n"
    )
    process_tree(f"while true; do sh {tmp_path / 'start.sh'}; sleep 1; done", "doctor-script-bot")
    process_tree(f"sh {tmp_path / 'forever.sh'}", "doctor-file-loop-bot")
    loop = f"while :; do {PYTHON} -c 'import time; time.sleep(120)' doctor-flags-bot; sleep 1; done"
    process_tree(f'exec sh -ec "{loop}"', "doctor-flags-bot")

    monitors = [
        _kill_process_monitor("script", "doctor-script-bot"),
        _kill_process_monitor("file-loop", "doctor-file-loop-bot"),
        _kill_process_monitor("flags", "doctor-flags-bot"),
    ]
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)))

    assert result.returncode == 0, result.stdout
    assert "no findings" in result.stdout, result.stdout


def test_a_staleness_limit_shorter_than_the_heartbeat_interval_is_a_problem(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat.json"
    heartbeat.write_text(json.dumps({"format": "horus-heartbeat/1", "interval": 60.0, "pid": 1}))
    log = tmp_path / "bot.log"
    log.write_text("")
    monitor = {
        "name": "bot",
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 30},
        "verify": {"type": "heartbeat", "path": str(heartbeat), "max_age_seconds": 180},
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert result.returncode == 1
    assert (
        f"problem: log_staleness allows 30 s without a write to {log}, but the service beats every 60 s (the "
        f"interval in {heartbeat}), so Horus would heal it while it is healthy: raise max_age_seconds above 60 s "
        "(for example to 180 s, which leaves room for two late beats)"
    ) in result.stdout


def test_heals_that_can_never_run_here_are_problems(tmp_path: Path, stubs: Any) -> None:
    stubs.install("systemctl")
    not_executable = tmp_path / "repair.sh"
    not_executable.write_text("#!/bin/sh\n")
    monitors = [
        {
            "name": "mac-only",
            "check": {"type": "port_open", "port": 9},
            "heal": {"action": "launchctl_restart", "label": "com.example.bot"},
        },
        {
            "name": "scripted",
            "check": {"type": "port_open", "port": 9},
            "escalation": [
                {"action": "run_script", "command": ["no-such-repair-tool"]},
                {"action": "run_script", "command": [str(not_executable)]},
                {"action": "systemctl_restart", "unit": "bot", "user": True},
            ],
        },
    ]
    path = os.pathsep.join([str(stubs.directory), "/usr/bin", "/bin"])
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)), env={**os.environ, "PATH": path})

    assert result.returncode == 1
    if sys.platform != "darwin":
        assert (
            f"problem: its heal (launchctl_restart) can never run: launchctl is not on Horus's PATH (this machine "
            f"runs {sys.platform}, not macOS): use the heal of the service manager that runs the service here, or "
            "install launchd, macOS's service manager"
        ) in result.stdout
    assert (
        "problem: its escalation step 1 (run_script) can never run: its program no-such-repair-tool is not on "
        "Horus's PATH: give its full path in command, or install it"
    ) in result.stdout
    assert (
        f"problem: its escalation step 2 (run_script) can never run: its program {not_executable} is not an "
        f"executable file: make it executable (chmod +x {not_executable}) or correct command"
    ) in result.stdout
    assert "escalation step 3" not in result.stdout


def test_a_system_domain_heal_needs_a_root_horus(tmp_path: Path, stubs: Any) -> None:
    stubs.install("launchctl")
    monitor = {
        "name": "bot",
        "check": {"type": "port_open", "port": 9},
        "heal": {"action": "launchctl_restart", "label": "com.example.bot", "domain": "system"},
    }
    config = load_config(write_config(tmp_path, monitor))
    findings = run_audits(Subject.of_monitor(config.monitors[0]), Host(euid=501, platform="darwin"), kinds=["heals"])

    assert [f.sentence for f in findings] == [
        "its heal (launchctl_restart) restarts a job in launchd's system domain, which needs root, and Horus runs "
        "as 501: run Horus as root (a LaunchDaemon), or install the service as a LaunchAgent and drop domain: system"
    ]


def test_doctor_names_one_monitor_and_refuses_an_unknown_one(tmp_path: Path, bot: Path) -> None:
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    clean = {"name": "web", "check": {"type": "port_open", "port": 9}}
    config = write_config(tmp_path, launchd_monitor(bot, plist), clean)

    only_web = horus("doctor", "-c", str(config), "web")
    assert (only_web.returncode, only_web.stdout.strip()) == (0, "no findings (1 monitor audited)")
    unknown = horus("doctor", "-c", str(config), "nope")
    assert unknown.returncode == 2
    assert "no monitor named 'nope'" in unknown.stderr


def test_the_doctor_check_is_unhealthy_with_the_findings_and_healthy_once_fixed(tmp_path: Path, bot: Path) -> None:
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=[PYTHON],
        EnvironmentVariables={"EXCHANGE_KEY": "k", "API_SECRET": "s", "DB_URL": "pg"},
    )
    monitor = {
        "name": "bot-setup",
        "check": {"type": "doctor"},
        "heal": {"action": "launchctl_restart", "label": "com.example.bot"},
        "service": {"source_dir": str(bot), "plist": str(plist)},
    }
    config = write_config(tmp_path, monitor)
    result = horus("check", "-c", str(config), "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "unhealthy"
    assert row["reason"] == (
        f"problem: the service reads REDIS_URL (bot.py line 5) but its plist does not set it: add it under "
        f"EnvironmentVariables in {plist}"
    )

    write_plist(
        plist,
        ProgramArguments=[PYTHON],
        EnvironmentVariables={"EXCHANGE_KEY": "k", "API_SECRET": "s", "DB_URL": "pg", "REDIS_URL": "redis://"},
    )
    again = json.loads(horus("check", "-c", str(config), "--json").stdout)[0]
    assert (again["status"], again["reason"]) == ("healthy", "no problems (1 warning: see horus doctor)")

    strict = {**monitor, "check": {"type": "doctor", "fail_on": "warning", "findings": ["environment"]}}
    (row,) = json.loads(horus("check", "-c", str(write_config(tmp_path, strict)), "--json").stdout)
    assert row["status"] == "unhealthy"
    assert row["reason"].startswith("warning: the service reads LOG_LEVEL (bot.py line 4, with a default)")


def test_the_doctor_check_refuses_unknown_kinds(tmp_path: Path) -> None:
    monitor = {"name": "bot", "check": {"type": "doctor", "findings": ["environmnet"]}}
    result = horus("validate", "-c", str(write_config(tmp_path, monitor)))

    assert result.returncode == 2
    assert "unknown kinds environmnet" in result.stderr


def test_a_bot_that_loads_its_own_env_needs_only_what_the_env_lacks(tmp_path: Path, bot: Path) -> None:
    (bot / "bot.py").write_text("from dotenv import load_dotenv\n\nload_dotenv()\n" + BOT)
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={"DB_URL": "pg"})
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert "EXCHANGE_KEY" not in result.stdout
    assert "API_SECRET" not in result.stdout
    assert "problem: the service reads REDIS_URL (bot.py line 8) but its plist does not set it" in result.stdout


def test_a_node_bot_that_loads_its_env_from_the_working_directory_needs_working_directory_set(
    tmp_path: Path, bot: Path
) -> None:
    (bot / "bot.py").unlink()
    (bot / "docker-compose.yml").unlink()
    (bot / "bot.js").write_text(
        "require('dotenv').config();\nconst key = process.env.EXCHANGE_KEY;\nconst port = process.env.PORT || 8080;\n"
    )
    nowhere = write_plist(tmp_path / "nowhere.plist", ProgramArguments=["/bin/sh"])
    there = write_plist(tmp_path / "there.plist", ProgramArguments=["/bin/sh"], WorkingDirectory=str(bot))
    sourced = write_plist(
        tmp_path / "sourced.plist", ProgramArguments=["/bin/sh", "-c", f"set -a; . {bot}/.env; exec node bot.js"]
    )
    monitors = [
        {"name": name, "check": {"type": "port_open", "port": 9}, "service": {"source_dir": str(bot), "plist": str(p)}}
        for name, p in (("nowhere", nowhere), ("there", there), ("sourced", sourced))
    ]
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)))
    by_monitor = result.stdout.split("\n\n")

    (nowhere_part,) = [part for part in by_monitor if part.startswith("nowhere:")]
    assert (
        "problem: bot.js line 1 loads .env from the working directory, but the job starts in / (its plist sets no "
        f"WorkingDirectory), so {bot / '.env'} is not loaded: set WorkingDirectory to {bot} in {nowhere}, or load "
        "the .env by its absolute path"
    ) in nowhere_part
    assert "the service reads EXCHANGE_KEY (bot.js line 2; in .env) but its plist does not set it" in nowhere_part
    for part in by_monitor:
        if part.startswith(("there:", "sourced:")):
            assert "EXCHANGE_KEY" not in part and "loads .env" not in part
            assert "warning: the service reads PORT (bot.js line 3, with a default)" in part


def test_systemd_looks_up_a_bare_exec_start_on_its_own_search_path(tmp_path: Path, shell_bin: Path) -> None:
    unit = tmp_path / "bot.service"
    unit.write_text(f"[Service]\nEnvironment=PATH={shell_bin}:/usr/bin\nExecStart=-botpython bot.py\n")
    searched = tmp_path / "searched.service"
    searched.write_text(f"[Service]\nExecSearchPath={shell_bin}\nExecStart=botpython bot.py\n")
    monitors = [
        {"name": name, "check": {"type": "port_open", "port": 9}, "service": {"unit": str(path)}}
        for name, path in (("bot", unit), ("searched", searched))
    ]
    env = {**os.environ, "PATH": f"{shell_bin}:{os.environ['PATH']}"}
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)), env=env)

    assert (
        "problem: ExecStart= botpython is not on systemd's search path for ExecStart= "
        "(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), which Environment=PATH does not change, "
        f"only on your shell's PATH (at {shell_bin / 'botpython'}): use the full path {shell_bin / 'botpython'}, or "
        f"set ExecSearchPath={shell_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin under "
        f"[Service] in {unit} (systemd 250 or later)"
    ) in result.stdout, result.stdout
    assert "searched:" not in result.stdout


def test_a_kill_process_heal_needs_a_job_that_starts_the_service_again(tmp_path: Path) -> None:
    no_keep_alive = write_plist(tmp_path / "bot.plist", ProgramArguments=["/bin/sh"])
    kept_alive = write_plist(tmp_path / "kept.plist", ProgramArguments=["/bin/sh"], KeepAlive=True)
    on_failure = tmp_path / "bot.service"
    on_failure.write_text("[Service]\nExecStart=/bin/sh\nRestart=on-failure\n")
    always = tmp_path / "always.service"
    always.write_text("[Service]\nExecStart=/bin/sh\nRestart=always\n")

    def monitor(name: str, files: dict[str, str], signal: str = "SIGTERM") -> dict[str, Any]:
        heal = {"action": "kill_process", "process_pattern": "doctor-nothing-matches-this", "signal": signal}
        return {"name": name, "check": {"type": "port_open", "port": 9}, "heal": heal, "service": files}

    monitors = [
        monitor("launchd", {"plist": str(no_keep_alive)}),
        monitor("kept", {"plist": str(kept_alive)}),
        monitor("systemd", {"unit": str(on_failure)}),
        monitor("killed", {"unit": str(on_failure)}, signal="SIGKILL"),
        monitor("always", {"unit": str(always)}),
    ]
    result = horus("doctor", "-c", str(write_config(tmp_path, *monitors)))

    assert result.returncode == 1
    assert (
        f"problem: its heal stops the service, but its plist {no_keep_alive} sets no KeepAlive, so launchd does not "
        "start it again: set KeepAlive to true in the plist (launchd then restarts it within its ThrottleInterval)"
    ) in result.stdout
    assert (
        f"problem: its heal stops the service, but its unit {on_failure} says Restart=on-failure, and systemd counts "
        "an exit on SIGTERM as clean, so systemd does not start it again: set Restart=always under [Service] in the "
        "unit"
    ) in result.stdout
    assert [line for line in lines_of(result) if line.endswith(":")] == ["launchd:", "systemd:"]


def test_the_monitors_own_log_and_heartbeat_paths_are_audited_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "Desktop").mkdir(parents=True)
    unit = tmp_path / "bot.service"
    unit.write_text("[Service]\nExecStart=/bin/sh\n")
    monitor = {
        "name": "bot",
        "check": {"type": "log_staleness", "log_file": str(home / "Desktop" / "bot.log"), "max_age_seconds": 60},
        "verify": {"type": "heartbeat", "path": str(tmp_path / "run" / "hb.json"), "max_age_seconds": 60},
        "service": {"unit": str(unit)},
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)), env={**os.environ, "HOME": str(home)})

    assert (
        f"warning: its log_staleness check's log_file {home / 'Desktop' / 'bot.log'} is under ~/Desktop, a "
        "privacy-protected folder: if this moves to a Mac"
    ) in result.stdout
    assert (
        f"problem: its heartbeat check's path {tmp_path / 'run' / 'hb.json'} is in {tmp_path / 'run'}, which does "
        f"not exist (and neither launchd nor systemd creates it): create it: mkdir -p {tmp_path / 'run'}"
    ) in result.stdout


def test_compose_env_files_and_unit_drop_ins_count(tmp_path: Path) -> None:
    home = tmp_path / "home"
    units = home / ".config" / "systemd" / "user"
    (units / "bot.service.d").mkdir(parents=True)
    (units / "bot.service").write_text("[Service]\nExecStart=/bin/sh\nEnvironment=FROM_UNIT=1\n")
    (units / "bot.service.d" / "secrets.conf").write_text("[Service]\nEnvironment=FROM_DROP_IN=1\n")
    source = tmp_path / "src"
    source.mkdir()
    (source / "shared.env").write_text("FROM_UNIT=x\nFROM_DROP_IN=y\nFROM_COMPOSE_ENV_FILE=z\n")
    (source / "compose.yaml").write_text("services:\n  bot:\n    env_file:\n      - shared.env\n")
    monitor = {
        "name": "bot",
        "check": {"type": "systemd_service", "unit": "bot", "user": True},
        "work_tree": str(source),
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)), env={**os.environ, "HOME": str(home)})

    assert lines_of(result)[1:-1] == [
        "problem: FROM_COMPOSE_ENV_FILE is set for the service in compose service bot's env_file shared.env but its "
        f"unit does not set it: add Environment=FROM_COMPOSE_ENV_FILE=... under [Service] in {units / 'bot.service'}, "
        "or put it in an EnvironmentFile="
    ], result.stdout


def test_drift_after_a_migration_opens_an_incident_in_the_running_daemon_and_the_fix_closes_it(
    tmp_path: Path, bot: Path
) -> None:
    """The service moved to launchd and its plist lost a variable: a running Horus opens an incident that names
    it, and once the plist sets it the incident recovers, with no heal (nothing to restart would fix it)."""
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=[PYTHON],
        EnvironmentVariables={"EXCHANGE_KEY": "k", "API_SECRET": "s", "DB_URL": "pg"},
    )
    monitor = {
        "name": "bot-setup",
        "interval_seconds": 0.5,
        "min_failures_to_heal": 1,
        "confirm_recovery_seconds": 0,
        "check": {"type": "doctor"},
        "service": {"source_dir": str(bot), "plist": str(plist)},
    }
    config = tmp_path / "horus.json"
    config.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": [monitor]}))
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("incident.opened"), timeout=30)
        failed = log.named("check.failed")[0]
        assert "REDIS_URL" in failed["reason"] and "EnvironmentVariables" in failed["reason"], failed
        shown = horus("incident", "-c", str(config), "--state-dir", str(tmp_path / "state"), "1")
        assert "REDIS_URL" in shown.stdout, shown.stdout + shown.stderr
        write_plist(
            plist,
            ProgramArguments=[PYTHON],
            EnvironmentVariables={"EXCHANGE_KEY": "k", "API_SECRET": "s", "DB_URL": "pg", "REDIS_URL": "redis://"},
        )
        wait_until_sync(lambda: log.named("monitor.recovered"), timeout=30)
        [recovered] = log.named("monitor.recovered")
        assert recovered["outcome"] == "recovered without a heal", recovered
        assert not log.named("heal.started")
    finally:
        assert stop_daemon(daemon) == 0


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_source_dir_that_is_not_a_directory_is_said_not_passed_over(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "bot-moved-away"
    if kind == "a file":
        source.write_text("not a directory\n")
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    monitor = {
        "name": "bot",
        "check": {"type": "port_open", "port": 9},
        "service": {"source_dir": str(source), "plist": str(plist)},
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    why = "it does not exist" if kind == "missing" else "it is not a directory"
    assert (
        f"warning: its source_dir {source} cannot be searched ({why}), so the variables its code reads were not "
        "compared with the job's: set service.source_dir (or the monitor's work_tree) to the directory of the "
        "service's code"
    ) in lines_of(result), result.stdout
    assert "no findings" not in result.stdout


def test_a_source_tree_too_big_to_read_whole_is_said_with_what_was_read(tmp_path: Path) -> None:
    source = tmp_path / "monorepo"
    source.mkdir()
    for index in range(2001):
        (source / f"module_{index:04}.py").write_text("x = 1\n")
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    monitor = {
        "name": "bot",
        "check": {"type": "port_open", "port": 9},
        "service": {"source_dir": str(source), "plist": str(plist)},
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert (
        f"warning: only part of its source_dir {source} was searched (it stopped after 2000 source files), so "
        "variables read in the rest were not compared with the job's: point service.source_dir at the service's "
        "own code, not a tree that holds more"
    ) in lines_of(result), result.stdout


def test_a_compose_file_whose_aliases_expand_without_end_is_read_in_a_moment(tmp_path: Path) -> None:
    source = tmp_path / "bot"
    source.mkdir()
    layers = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        layers.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    (source / "compose.yaml").write_text(
        "\n".join([*layers, "services:", "  bot:", '    environment: [*h, *h, *h, *h, "DB_URL=pg"]', ""])
    )
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    monitor = {
        "name": "bot",
        "check": {"type": "port_open", "port": 9},
        "service": {"source_dir": str(source), "plist": str(plist)},
    }
    result = subprocess.run(
        [str(HORUS), "doctor", "-c", str(write_config(tmp_path, monitor))], capture_output=True, text=True, timeout=15
    )

    assert "problem: DB_URL is set for the service in compose service bot's environment:" in result.stdout, (
        result.stdout + result.stderr
    )


def test_a_binary_plist_is_read_like_an_xml_one(tmp_path: Path, bot: Path) -> None:
    plist = tmp_path / "bot.plist"
    job = {"Label": "com.example.bot", "ProgramArguments": [PYTHON], "EnvironmentVariables": {"EXCHANGE_KEY": "k"}}
    plist.write_bytes(plistlib.dumps(job, fmt=plistlib.FMT_BINARY))

    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert "cannot be read" not in result.stdout, result.stdout
    assert "problem: the service reads REDIS_URL (bot.py line 5) but its plist does not set it" in result.stdout


def test_a_binary_plist_whose_values_repeat_one_another_without_end_is_read_in_a_moment(
    tmp_path: Path, bot: Path
) -> None:
    # A binary plist refers to one object as often as it likes: nine levels of nine are billions of strings.
    nested: list[Any] = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9
    plist = tmp_path / "bot.plist"
    job = {"Label": "b", "ProgramArguments": [PYTHON], "EnvironmentVariables": {"EXCHANGE_KEY": "k", "BOMB": nested}}
    plist.write_bytes(plistlib.dumps(job, fmt=plistlib.FMT_BINARY))

    result = subprocess.run(
        [str(HORUS), "doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist)))],
        capture_output=True,
        text=True,
        timeout=15,
    )

    assert "problem: the service reads REDIS_URL (bot.py line 5) but its plist does not set it" in result.stdout, (
        result.stdout + result.stderr
    )


def test_a_log_path_that_is_a_link_loop_or_a_link_into_a_missing_directory_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    (tmp_path / "dangling.log").symlink_to(tmp_path / "gone" / "out.log")
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=["/bin/sh"],
        StandardOutPath=str(tmp_path / "loop-a"),
        StandardErrorPath=str(tmp_path / "dangling.log"),
    )
    monitor = {"name": "bot", "check": {"type": "port_open", "port": 9}, "service": {"plist": str(plist)}}
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert result.returncode == 1, result.stdout
    assert (
        f"problem: its plist's StandardOutPath {tmp_path / 'loop-a'} is a symbolic link that leads back to itself"
    ) in result.stdout
    assert (
        f"problem: its plist's StandardErrorPath {tmp_path / 'dangling.log'} is a link to "
        f"{tmp_path / 'gone' / 'out.log'}, which is in {tmp_path / 'gone'}, which does not exist"
    ) in result.stdout


def test_a_heartbeat_limit_shorter_than_the_heartbeat_interval_is_a_problem(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat.json"
    heartbeat.write_text(json.dumps({"format": "horus-heartbeat/1", "interval": 600.0, "pid": 1}))
    monitor = {"name": "bot", "check": {"type": "heartbeat", "path": str(heartbeat), "max_age_seconds": 180}}
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert result.returncode == 1, result.stdout
    assert "could not finish" not in result.stdout
    assert (
        "problem: the heartbeat check allows 180 s between beats, but the service beats every 600 s"
    ) in result.stdout


def test_a_heartbeat_interval_that_is_not_a_finite_number_says_nothing_of_the_limits(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat.json"
    heartbeat.write_text('{"format": "horus-heartbeat/1", "interval": Infinity, "pid": 1}')
    monitor = {"name": "bot", "check": {"type": "heartbeat", "path": str(heartbeat), "max_age_seconds": 180}}
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert result.stdout.strip() == "no findings (1 monitor audited)"


def test_a_command_line_that_only_contains_the_letters_of_env_does_not_count_as_loading_it(
    tmp_path: Path, bot: Path
) -> None:
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=["/bin/sh", "-c", f"exec {PYTHON} /home/me/.environments/bot/bot.py"],
        EnvironmentVariables={"EXCHANGE_KEY": "k"},
    )
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert "problem: API_SECRET is set for the service in .env but its plist does not set it" in result.stdout, (
        result.stdout
    )


def test_a_command_line_that_sources_the_env_counts_as_loading_it(tmp_path: Path, bot: Path) -> None:
    plist = write_plist(
        tmp_path / "bot.plist",
        ProgramArguments=["/bin/sh", "-c", f"set -a; . {bot}/.env; exec {PYTHON} bot.py"],
        EnvironmentVariables={"EXCHANGE_KEY": "k"},
    )
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert "API_SECRET" not in result.stdout, result.stdout


def test_a_compose_env_file_that_is_a_link_loop_costs_only_itself(tmp_path: Path) -> None:
    source = tmp_path / "bot"
    source.mkdir()
    (source / "loop-a").symlink_to(source / "loop-b")
    (source / "loop-b").symlink_to(source / "loop-a")
    (source / "compose.yaml").write_text("services:\n  bot:\n    env_file: [loop-a]\n    environment: [DB_URL=pg]\n")
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    monitor = {
        "name": "bot",
        "check": {"type": "port_open", "port": 9},
        "service": {"source_dir": str(source), "plist": str(plist)},
    }
    result = horus("doctor", "-c", str(write_config(tmp_path, monitor)))

    assert "could not finish" not in result.stdout, result.stdout
    assert "problem: DB_URL is set for the service in compose service bot's environment:" in result.stdout


def test_a_source_file_that_is_a_link_loop_is_skipped_and_the_rest_searched(tmp_path: Path, bot: Path) -> None:
    (bot / "loop_a.py").symlink_to(bot / "loop_b.py")
    (bot / "loop_b.py").symlink_to(bot / "loop_a.py")
    plist = write_plist(tmp_path / "bot.plist", ProgramArguments=[PYTHON], EnvironmentVariables={})
    result = horus("doctor", "-c", str(write_config(tmp_path, launchd_monitor(bot, plist))))

    assert "could not finish" not in result.stdout, result.stdout
    assert "problem: the service reads REDIS_URL (bot.py line 5) but its plist does not set it" in result.stdout
