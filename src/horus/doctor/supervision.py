"""A kill_process heal on a service that nothing restarts: the heal then stops the service for good.

Judged from the processes the heal would signal right now: a supervisor (launchd or systemd running it
as a service, a shell restart loop, horus-runner, supervisord, containerd-shim, pm2) must be among the
ancestors of each. A service that is not running now cannot be judged, and is not reported.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import psutil

from horus.doctor.findings import PROBLEM, Finding
from horus.doctor.jobs import Job
from horus.doctor.subject import Host, Subject
from horus.processes import ProcessIdentity, display_cmdline, match_processes, uid_of, wrappings

KIND = "supervision"

MAX_ANCESTORS = 64
# Processes that start a service again when it exits, by process name or in their command line.
_SUPERVISOR_NAMES = re.compile(r"^(?:supervisord|containerd-shim.*|pm2|PM2.*|runsv|s6-supervise|horus-runner)$")
_SUPERVISOR_COMMANDS = re.compile(r"horus-runner|horus_sdk\.runner|supervisord|containerd-shim|\bpm2\b|PM2 v")
# A shell running its command again and again: `while true; do ...; done`, `until ...; do ...; done`.
_RESTART_LOOP = re.compile(r"\b(?:while|until)\b.*\bdo\b")
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
        looped = {w.inner.pid for w in wrappings(matches) if _RESTART_LOOP.search(w.outer.cmdline)}
        outers = {w.outer.pid for w in wrappings(matches)}
        for process in matches:
            if process.pid in outers and heal.ignore_wrappers:
                continue  # the heal leaves wrappers alone
            if process.pid in looped:
                continue
            parent = _unsupervised_parent(process, launchd_job=any(j.manager == "launchd" for j in subject.jobs))
            if parent is None:
                continue
            findings.append(
                Finding(
                    PROBLEM,
                    subject.monitor,
                    KIND,
                    f"its {step} stops pid {process.pid} ({display_cmdline(process.cmdline, 60)}), which nothing "
                    f"restarts: its parent is {parent}, and no supervisor ({SUPERVISORS}) is among its ancestors",
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


def _unsupervised_parent(process: ProcessIdentity, *, launchd_job: bool) -> str | None:
    """None when a supervisor is among the process's ancestors; else a description of its parent."""
    try:
        proc = psutil.Process(process.pid)
        if proc.create_time() != process.create_time:
            return None  # it exited meanwhile: nothing to judge
        parent = proc.parent()
        if parent is None:
            return None
        shown_parent = f"pid {parent.pid} ({parent.name()})"
        if parent.pid == 1 and _managed_by_init(process.pid, parent.name(), launchd_job=launchd_job):
            return None
        current: psutil.Process | None = parent
        for _ in range(MAX_ANCESTORS):
            if current is None or current.pid <= 1:
                break
            if _is_supervisor(current, process.pid):
                return None
            current = current.parent()
    except psutil.Error:
        return None  # cannot look: say nothing rather than something wrong
    return shown_parent


def _is_supervisor(proc: psutil.Process, service_pid: int) -> bool:
    try:
        name = proc.name()
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    if _SUPERVISOR_NAMES.match(name) or _SUPERVISOR_COMMANDS.search(cmdline):
        return True
    if _RESTART_LOOP.search(cmdline):
        return True
    # A user's systemd (systemd --user) runs its services as direct children.
    return name == "systemd" and _systemd_service_cgroup(service_pid)


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
