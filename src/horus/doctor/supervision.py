"""A kill_process heal on a service that nothing restarts: the heal then stops the service for good.

Judged from the processes the heal would signal right now. The service's death has to reach a supervisor
(launchd or systemd running it as a service, a shell restart loop, horus-runner, supervisord,
containerd-shim, pm2): it reaches the parent, and goes on up only through processes that end when their
child ends (a start script, `sh -c`, env, sudo, timeout, uv run, tini ...). Any other process on the way
(a test runner, an interactive shell, tmux) goes on running, and nothing above it ever learns of the
death. A service that is not running now cannot be judged, and is not reported.
"""

from __future__ import annotations

import enum
import re
import sys
from pathlib import Path

import psutil

from horus.doctor.findings import PROBLEM, Finding
from horus.doctor.jobs import Job
from horus.doctor.reading import Unreadable, read_bounded
from horus.doctor.subject import Host, Subject
from horus.processes import ProcessIdentity, display_cmdline, match_processes, uid_of, wrappings

KIND = "supervision"

MAX_ANCESTORS = 64
# Processes that start a service again when it exits, by process name or in their command line.
_SUPERVISOR_NAMES = re.compile(r"^(?:supervisord|containerd-shim.*|pm2|PM2.*|runsv|s6-supervise|horus-runner)$")
_SUPERVISOR_COMMANDS = re.compile(r"horus-runner|horus_sdk\.runner|supervisord|containerd-shim|\bpm2\b|PM2 v")
# A shell running its command again and again: `while true; do ...; done`, `until ...; do ...; done`.
_RESTART_LOOP = re.compile(r"\b(?:while|until)\b.*\bdo\b", re.DOTALL)
# `sh -c`, and the same flag among others: `bash -lc`, `sh -ec`.
_COMMAND_FLAG = re.compile(r"^-[A-Za-z]*c[A-Za-z]*$")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish"})
# Programs that run one command and end when it ends, so its death goes on up to their parent.
_ENDS_WITH_ITS_COMMAND = frozenset(
    {
        "env", "timeout", "sudo", "su", "runuser", "doas", "nice", "ionice", "stdbuf", "setsid", "flock",
        "caffeinate", "tini", "dumb-init", "catatonit", "chpst", "s6-setuidgid",
        "uv", "poetry", "pipenv", "pdm", "hatch", "rye", "npm", "npx", "yarn", "pnpm",
    }
)  # fmt: skip
# A start script is read to see whether it loops; a larger one is not a start script.
MAX_SCRIPT_BYTES = 256 * 1024
# systemd's clean exit signals: a service stopped by one of them has not failed, for Restart=on-failure.
_CLEAN_SIGNALS = frozenset({"SIGTERM", "SIGINT", "SIGHUP", "SIGPIPE"})
SUPERVISORS = (
    "launchd or systemd running it as a service, a restart loop, horus-runner, supervisord, containerd-shim, pm2"
)


def audit(subject: Subject, host: Host) -> list[Finding]:
    findings: list[Finding] = []
    for index, heal in enumerate(subject.heals):
        if getattr(heal, "action", None) != "kill_process":
            continue
        step = "heal" if len(subject.heals) == 1 else f"escalation step {index + 1} (kill_process)"
        for job in subject.jobs:
            finding = _job_does_not_restart(subject, job, step, heal.signal)
            if finding is not None:
                findings.append(finding)
        try:
            matches = match_processes(heal.process_pattern, regex=heal.regex, uid=uid_of(heal.user)).ours
        except (LookupError, psutil.Error):
            continue
        outers = {w.outer.pid for w in wrappings(matches)}
        for process in matches:
            if process.pid in outers and heal.ignore_wrappers:
                continue  # the heal leaves wrappers alone
            parent = _unsupervised_parent(process, launchd_job=any(j.manager == "launchd" for j in subject.jobs))
            if parent is None:
                continue
            findings.append(
                Finding(
                    PROBLEM,
                    subject.monitor,
                    KIND,
                    f"its {step} stops pid {process.pid} ({display_cmdline(process.cmdline, 60)}), which nothing "
                    f"restarts: its parent is {parent}, and its death reaches no supervisor ({SUPERVISORS})",
                    "run the service under one (a launchd job with KeepAlive, a systemd unit with Restart=always, "
                    "horus-runner), or heal with an action that starts it again (launchctl_restart, "
                    "systemctl_restart, run_script)",
                )
            )
            break
    return findings


def _job_does_not_restart(subject: Subject, job: Job, step: str, signal_name: str) -> Finding | None:
    """The service's own job, read from its plist or unit: does it start the service again after a kill?"""
    if job.manager == "launchd":
        if job.keep_alive is True or (isinstance(job.keep_alive, dict) and job.keep_alive):
            return None
        setting = "sets KeepAlive to false" if job.keep_alive is False else "sets no KeepAlive"
        return Finding(
            PROBLEM,
            subject.monitor,
            KIND,
            f"its {step} stops the service, but its plist {job.path} {setting}, so launchd does not start it again",
            "set KeepAlive to true in the plist (launchd then restarts it within its ThrottleInterval)",
        )
    restart = job.restart or "no"
    if restart == "always":
        return None
    if restart in ("on-failure", "on-abnormal", "on-abort") and signal_name not in _CLEAN_SIGNALS:
        return None
    if restart == "no":
        why = "sets no Restart= (systemd's default is Restart=no)"
    else:
        why = f"says Restart={restart}, and systemd counts an exit on {signal_name} as clean"
    return Finding(
        PROBLEM,
        subject.monitor,
        KIND,
        f"its {step} stops the service, but its unit {job.path} {why}, so systemd does not start it again",
        "set Restart=always under [Service] in the unit",
    )


class _Role(enum.Enum):
    """What an ancestor does when the process below it on the way to the service ends."""

    SUPERVISOR = "starts it again"
    ENDS_TOO = "ends too, passing the death on to its own parent"
    CARRIES_ON = "goes on running: nothing above it learns of the death"


def _unsupervised_parent(process: ProcessIdentity, *, launchd_job: bool) -> str | None:
    """None when the service's death reaches a supervisor; else a description of its parent."""
    try:
        proc = psutil.Process(process.pid)
        if proc.create_time() != process.create_time:
            return None  # it exited meanwhile: nothing to judge
        parent = proc.parent()
        if parent is None:
            return None
        current: psutil.Process | None = parent
        for _ in range(MAX_ANCESTORS):
            if current is None:
                break
            if current.pid == 1:
                if _managed_by_init(process.pid, current.name(), launchd_job=launchd_job):
                    return None
                break
            role = _role(current, process.pid)
            if role is _Role.SUPERVISOR:
                return None
            if role is _Role.CARRIES_ON:
                break
            current = current.parent()
        shown = f"pid {parent.pid} ({parent.name()})"
        if current is not None and current.pid != parent.pid:
            shown += f", which ends with it, but the death goes no further than pid {current.pid} ({current.name()})"
        if current is not None and current.pid > 1 and current.name() in _SHELLS:
            shown += (
                ", an interactive shell (a loop typed at its prompt cannot be seen from outside it: "
                "put the loop in a script or sh -c)"
            )
    except psutil.Error:
        return None  # cannot look: say nothing rather than something wrong
    return shown


def _role(proc: psutil.Process, service_pid: int) -> _Role:
    try:
        name = proc.name()
        argv = proc.cmdline()
    except psutil.Error:
        return _Role.CARRIES_ON
    if _SUPERVISOR_NAMES.match(name) or _SUPERVISOR_COMMANDS.search(" ".join(argv)):
        return _Role.SUPERVISOR
    # A user's systemd (systemd --user) runs its services as direct children.
    if name == "systemd" and _systemd_service_cgroup(service_pid):
        return _Role.SUPERVISOR
    if name in _SHELLS:
        return _shell_role(proc, argv)
    if name in _ENDS_WITH_ITS_COMMAND:
        return _Role.ENDS_TOO
    return _Role.CARRIES_ON


def _shell_role(proc: psutil.Process, argv: list[str]) -> _Role:
    """A shell running a script loops, or ends when the script's last command does; an interactive one
    (no script: a login shell, a tmux pane) prompts again."""
    args = argv[1:]
    command_flag = next((i for i, a in enumerate(args[:-1]) if _COMMAND_FLAG.match(a)), None)
    if command_flag is not None:
        script: str | None = args[command_flag + 1]
    else:
        operands = [a for a in args if not a.startswith(("-", "+"))]
        if not operands:
            return _Role.CARRIES_ON
        script = _read_script(proc, operands[0])
    return _Role.SUPERVISOR if script is not None and _RESTART_LOOP.search(script) else _Role.ENDS_TOO


def _read_script(proc: psutil.Process, path: str) -> str | None:
    """The start script a shell runs, read as the doctor reads every setup file; None when it cannot be."""
    try:
        return read_bounded(Path(proc.cwd(), path), MAX_SCRIPT_BYTES)
    except (Unreadable, psutil.Error):
        return None


def _managed_by_init(pid: int, init_name: str, *, launchd_job: bool) -> bool:
    """Whether pid 1 runs this process as a service rather than having adopted an orphan."""
    if init_name == "systemd":
        return _systemd_service_cgroup(pid)
    if init_name == "launchd":
        # launchd adopts orphans too, and only root can ask it which job a process belongs to.
        return launchd_job
    return False


def _systemd_service_cgroup(pid: int) -> bool:
    """Whether systemd runs ``pid`` in a service's cgroup (a ``.service``), not a login session's scope."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        parts = line.rpartition(":")[2].strip("/").split("/")
        if parts and parts[-1].endswith(".service") and not parts[-1].startswith("user@"):
            return True
    return False
