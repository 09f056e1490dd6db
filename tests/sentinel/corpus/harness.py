"""Run one failure scenario for real, the way the daemon would see it, and diagnose it twice.

A :class:`Scenario` names the cause a reader of the evidence should find and a substring of the line
that proves it. Its ``build`` function prepares a :class:`Run`: it installs the service's code into the
run's ``app/`` directory, starts whatever the service talks to (a loopback API, a database stand-in, a
process holding a port), and returns a :class:`Plan`: the service's parameters, the monitor's config
block, how the service is run (directly, or under a ``while true`` shell loop), and optionally what the
world does to it (a deploy, a killed upstream).

:func:`run_scenario` then does what the daemon does. It writes the config to a file and loads it with the
real loader, starts the service detached (a process Horus did not start, as in real life), builds the
monitor's real check and looks every ``interval_seconds`` until the check has seen the service healthy,
lets the world act, and waits (bounded) until the check has failed ``min_failures_to_heal`` times in a
row. The service (or the trigger) marks the moment its failure began by creating ``<run>/.failing``: that
is ``last_healthy_at``, and the first failed look is ``failing_since``. While the service is still in its
failure state, :func:`horus.sentinel.diagnosis.diagnose` runs twice: without py-spy, then with py-spy on
PATH. Every process the run started is ended, by process group, whatever happened.

Time is compressed: a healthy period of two seconds, checks every 0.2 s with limits of 1.5 s. One thing
does not compress, a Python start-up, so a service that fails at every start under its shell loop would be
diagnosed before its first traceback was written; its plan asks (``steady_restarts``) for the diagnosis to
wait until the loop has run it that many times since the failure began, as it would have many times over
at a daemon's usual interval. ``HORUS_CORPUS_KEEP=1`` keeps each run's directory (config, parameters,
logs) for reading afterwards.

:func:`run_corpus` runs many scenarios at once, each in its own thread and event loop, and
:func:`misses` says what a diagnosis got wrong against its scenario.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from horus.checks.base import Check, CheckResult, ProbeContext, Status, new_probe_http_client
from horus.checks.registry import build_check
from horus.clock import SystemClock
from horus.config.loader import load_config
from horus.config.models import MonitorSettings
from horus.engine.runner import collect_evidence, run_check, run_inline
from horus.sentinel.diagnosis import Diagnosis, diagnose
from horus.sentinel.hypothesis import CAUSES

__all__ = [
    "Outcome",
    "Plan",
    "Run",
    "Scenario",
    "misses",
    "run_corpus",
    "run_scenario",
]

CORPUS = Path(__file__).resolve().parent
SERVICES = CORPUS / "services"
HELPERS = SERVICES / "helpers"
VENDOR = SERVICES / "vendor"
PY_SPY_BIN = Path(sys.executable).parent

# Bounds on every wait; generous, because the whole corpus shares two cores.
STARTUP_TIMEOUT = 30.0
FAILURE_TIMEOUT = 30.0
HELPER_TIMEOUT = 15.0
# A crash record written this long before the first failed look still explains it (the daemon's lookback).
EVIDENCE_LOOKBACK_SECONDS = 600.0
# Causes for which Sentinel must not claim to be sure: nothing in the evidence says why.
NOT_PROBABLE = frozenset({"unknown", "hung"})
PROBABLE = 0.5
# Set HORUS_CORPUS_KEEP=1 to keep each run's directory (logs, config, params) for reading afterwards.
KEEP = os.environ.get("HORUS_CORPUS_KEEP") == "1"

_LAUNCHER = """
import os, subprocess, sys
out = open(sys.argv[1], "ab")
child = subprocess.Popen(sys.argv[3:], cwd=sys.argv[2], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
print(child.pid)
"""


class Skip(Exception):
    """The machine cannot host this scenario (not root, no openssl): said as the reason, never a failure."""


Evidence = str | Callable[["Run"], str]


@dataclass(frozen=True)
class Scenario:
    """One real failure and what its diagnosis must say.

    ``cause`` is the top-1 cause expected (one of :data:`horus.sentinel.hypothesis.CAUSES`); ``evidence``
    a substring (compared without regard to case) of one of the top hypothesis' evidence lines, or a
    function of the run that gives it (a pid). ``cause_with_py_spy`` and ``evidence_with_py_spy`` apply
    when py-spy can show the stacks and the stacks say more than the log.
    """

    name: str
    cause: str
    evidence: Evidence
    build: Callable[[Run], Plan]
    story: str
    requires: tuple[str, ...] = ()
    cause_with_py_spy: str | None = None
    evidence_with_py_spy: Evidence | None = None

    def __post_init__(self) -> None:
        for cause in (self.cause, self.cause_with_py_spy):
            if cause is not None and cause not in CAUSES:
                raise ValueError(f"{self.name}: unknown cause {cause!r}")

    def expected_cause(self, py_spy: bool) -> str:
        return (self.cause_with_py_spy if py_spy else None) or self.cause


@dataclass
class Plan:
    """How to run one scenario's service and watch it."""

    service: str  # the program in app/ (installed by build)
    params: dict[str, Any]
    monitor: dict[str, Any]  # the monitor's config block, without its name
    output: Path  # where the service's (or its shell loop's) stdout and stderr go
    others: list[dict[str, Any]] = field(default_factory=list)  # other monitors in the config (upstreams)
    upstreams: list[str] = field(default_factory=list)  # monitors whose state the diagnosis is given
    # A ``while true`` loop around the service: the line it echoes after each exit ($? is the exit status).
    loop_message: str | None = None
    loop_pause: float = 0.2
    ulimit: str | None = None  # ``ulimit`` arguments applied by the shell loop, e.g. "-v 400000"
    trigger: Callable[[], None] | None = None  # what the world does once the service was seen healthy
    healthy_looks: int = 10  # healthy looks before the trigger (a service that fails by itself ignores it)
    # For a service that fails at every start under its loop: the diagnosis waits until the loop has run it
    # this many times since the failure began. At a daemon's usual interval it would have many times over
    # before the check's failures were counted; here the check is far quicker than a Python start-up.
    steady_restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one run of a scenario produced: both diagnoses, or why there are none."""

    scenario: Scenario
    diagnoses: dict[bool, Diagnosis] = field(default_factory=dict)  # keyed by "py-spy on PATH"
    expected_evidence: dict[bool, str] = field(default_factory=dict)
    reason: str | None = None
    failing_since: float | None = None
    last_healthy_at: float | None = None
    seconds: float = 0.0
    skipped: str | None = None
    error: str | None = None
    looks: list[str] = field(default_factory=list)  # what the check said, look by look


class Run:
    """One scenario's directory, processes and mounts; :meth:`close` ends and removes all of them."""

    def __init__(self, scenario: Scenario, root: Path) -> None:
        self.scenario = scenario
        self.dir = root / scenario.name
        self.app = self.dir / "app"
        self.logs = self.dir / "logs"
        self.out = self.dir / "out"
        self.site = self.dir / "venv" / "site-packages"
        for directory in (self.app, self.logs, self.out, self.site):
            directory.mkdir(parents=True, exist_ok=True)
        self.params_path = self.dir / "params.json"
        self.config_path = self.dir / "horus.yaml"
        self.marker = self.dir / ".failing"
        self._groups: list[tuple[int, float]] = []
        self._mounts: list[Path] = []
        self.service_argv: list[str] = []
        self.plan: Plan | None = None
        self.restarts_at_failure: int | None = None

    # -- building a scenario -------------------------------------------------------------------------

    def install(self, *names: str) -> None:
        """Copy service programs (and service_kit.py, which they all import) into app/."""
        for name in ("service_kit.py", *names):
            shutil.copy(SERVICES / name, self.app / Path(name).name)

    def vendor(self, *packages: str) -> None:
        """Put stand-in client libraries in the service's site-packages (on its PYTHONPATH)."""
        for package in packages:
            shutil.copytree(VENDOR / package, self.site / package, dirs_exist_ok=True)

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def log(self, name: str) -> Path:
        return self.logs / name

    def pattern(self, service: str) -> str:
        """The process pattern that names this run's service: its program's absolute path."""
        return str(self.app / service)

    def mark_failing(self) -> None:
        if not self.marker.exists():
            self.marker.touch()

    @staticmethod
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def helper(self, script: str, *args: str, ready: str | None = None) -> Helper:
        """Start one of services/helpers/ detached; with ``ready``, wait for the line it writes there."""
        ready_path = self.path(ready) if ready else None
        argv = [sys.executable, str(HELPERS / script), *args]
        if ready_path is not None:
            argv.append(str(ready_path))
        pid = self.detached(argv, self.log(f"helper-{Path(script).stem}.out"), cwd=self.dir)
        value = _wait_for_text(ready_path, HELPER_TIMEOUT, pid) if ready_path is not None else ""
        return Helper(self, pid, value)

    def detached(
        self, argv: list[str], output: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> int:
        """Start ``argv`` in a session of its own, not a descendant of this process (which plays Horus,
        whose descendants are never matched); it is ended with its whole group by :meth:`close`."""
        launched = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(output), str(cwd or self.dir), *argv],
            capture_output=True,
            text=True,
            check=True,
            timeout=HELPER_TIMEOUT,
            env={**os.environ, **(env or {})},
        )
        pid = int(launched.stdout)
        with contextlib.suppress(psutil.Error):
            self._groups.append((pid, psutil.Process(pid).create_time()))
        return pid

    def mount_tmpfs(self, directory: Path, size: str) -> None:
        """A tiny filesystem of its own at ``directory`` (root only): a disk that really fills."""
        if os.geteuid() != 0 or shutil.which("mount") is None:
            raise Skip("a tmpfs can only be mounted by root")
        directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise Skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self._mounts.append(directory)

    def git(self, *args: str, at: float | None = None, cwd: Path | None = None) -> None:
        when = f"@{int(at if at is not None else time.time())} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Mara Quint",
            "GIT_AUTHOR_EMAIL": "mara@desk.example",
            "GIT_COMMITTER_NAME": "Mara Quint",
            "GIT_COMMITTER_EMAIL": "mara@desk.example",
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        subprocess.run(["git", *args], cwd=cwd or self.app, env=env, check=True, capture_output=True, timeout=30)

    # -- the service ---------------------------------------------------------------------------------

    def start_service(self) -> int:
        """Start (or start again, as a deploy does) the plan's service; returns the pid of what was started."""
        plan = self.plan
        assert plan is not None
        self.service_argv = [sys.executable, str(self.app / plan.service), str(self.params_path)]
        env = {"PYTHONPATH": str(self.site), **plan.env}
        if plan.loop_message is None:
            return self.detached(self.service_argv, plan.output, cwd=self.app, env=env)
        body = shlex.join(self.service_argv)
        message = plan.loop_message.replace('"', '\\"')
        script = f'while true; do {body}; echo "{message}"; sleep {plan.loop_pause}; done'
        if plan.ulimit:
            script = f"ulimit {plan.ulimit}; {script}"
        return self.detached(["/bin/sh", "-c", script], plan.output, cwd=self.app, env=env)

    def restarts(self) -> int:
        """How many times the shell loop has said its service exited (its message, up to the ``$?``)."""
        assert self.plan is not None and self.plan.loop_message is not None
        said = self.plan.loop_message.split("$?")[0]
        try:
            return self.plan.output.read_text(errors="replace").count(said)
        except OSError:
            return 0

    def supervisor(self) -> psutil.Process:
        """The shell loop that runs the service."""
        assert self.plan is not None and self.plan.loop_message is not None
        program = str(self.app / self.plan.service)
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline[:2] == ["/bin/sh", "-c"] and program in cmdline[2]:
                return proc
        raise AssertionError("the shell loop is not running")

    def service_processes(self) -> list[psutil.Process]:
        """The service's Python processes (not its shell loop), oldest first."""
        program = str(self.app / (self.plan.service if self.plan else ""))
        found = []
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmdline = proc.info["cmdline"] or []
            if len(cmdline) >= 2 and cmdline[1] == program:
                found.append(proc)
        return sorted(found, key=lambda p: p.info["create_time"])

    def service_pid(self) -> int:
        procs = self.service_processes()
        if not procs:
            raise AssertionError("the service is not running")
        return procs[0].pid

    def stop_service_process(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the service's Python processes (a deploy restarting it, or a kill from outside)."""
        for proc in self.service_processes():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def wait_service_gone(self, pids: Iterable[int], timeout: float = HELPER_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        pending = set(pids)
        while pending and time.monotonic() < deadline:
            pending = {pid for pid in pending if _alive(pid)}
            time.sleep(0.02)
        if pending:
            raise AssertionError(f"processes {sorted(pending)} did not exit")

    # -- the end -------------------------------------------------------------------------------------

    def close(self) -> None:
        for leader, created in reversed(self._groups):
            _kill_group(leader, created)
        for directory in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)
        if not KEEP:
            _make_removable(self.dir)
            shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Helper:
    run: Run
    pid: int
    value: str  # what it wrote to its ready file (a port)

    @property
    def port(self) -> int:
        return int(self.value)

    def kill(self) -> None:
        """SIGKILL the helper and wait until it is gone (its port closed)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.run.wait_service_gone([self.pid])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_text(path: Path, timeout: float, pid: int) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            text = path.read_text().strip()
            if text:
                return text
        if not _alive(pid):
            raise AssertionError(f"helper {pid} exited before writing {path.name}")
        time.sleep(0.02)
    raise AssertionError(f"helper {pid} wrote nothing to {path.name} within {timeout} s")


def _kill_group(leader: int, created: float) -> None:
    """SIGKILL every process of the group ``leader`` started (its pgid), never a stranger that reuses it.

    Again until none is left: a member may fork (a pre-fork server booting a worker) while it is looked for.
    """
    for _ in range(50):
        found = False
        for proc in psutil.process_iter(["create_time", "status"]):
            try:
                mine = os.getpgid(proc.pid) == leader and proc.info["create_time"] >= created - 1
                if mine and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    found = True
            except (OSError, psutil.Error):
                continue
        if not found:
            return
        time.sleep(0.02)


def _make_removable(directory: Path) -> None:
    # A scenario may leave a directory read-only or owned by another user; root removes it anyway, others
    # need the write bit back.
    for path in [directory, *directory.rglob("*")]:
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)


# -- one run --------------------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, root: Path | None = None) -> Outcome:
    """Run ``scenario`` once, for real, and diagnose it without and with py-spy. Never raises."""
    outcome = Outcome(scenario)
    started = time.monotonic()
    own_root = root is None
    root = root or Path(tempfile.mkdtemp(prefix="horus-corpus-", dir="/tmp"))
    root.chmod(0o755)  # services that drop to another user must still reach their files
    run = Run(scenario, root)
    try:
        _missing = [need for need in scenario.requires if not _available(need)]
        if _missing:
            raise Skip(f"needs {', '.join(_missing)}")
        asyncio.run(_observe_and_diagnose(run, outcome))
    except Skip as exc:
        outcome.skipped = str(exc)
    except Exception:
        outcome.error = traceback.format_exc()
    finally:
        try:
            run.close()
        finally:
            if own_root and not KEEP:
                shutil.rmtree(root, ignore_errors=True)
    outcome.seconds = time.monotonic() - started
    return outcome


def _available(need: str) -> bool:
    if need == "root":
        return os.geteuid() == 0
    return shutil.which(need) is not None


async def _observe_and_diagnose(run: Run, outcome: Outcome) -> None:
    scenario = run.scenario
    plan = await asyncio.to_thread(scenario.build, run)
    run.plan = plan
    params = {"log_file": None, **plan.params}
    run.params_path.write_text(json.dumps(params, indent=2))
    monitors = [{"name": scenario.name, **plan.monitor}, *plan.others]
    run.config_path.write_text(yaml.safe_dump({"monitors": monitors}, sort_keys=False))
    # The config was written long before the failure, as a real one is; its change is not this failure's.
    long_ago = time.time() - 30 * 86400
    os.utime(run.config_path, (long_ago, long_ago))
    by_name = {m.name: m for m in load_config(run.config_path).monitor_settings()}
    settings = by_name[scenario.name]

    await asyncio.to_thread(run.start_service)
    async with new_probe_http_client() as http:
        ctx = ProbeContext(clock=SystemClock(), http=http)
        check = build_check(settings.check)
        await check.open()
        try:
            await _watch(run, plan, settings, check, ctx, outcome)
            await asyncio.to_thread(_wait_for_restarts, run, plan)
            assert outcome.failing_since is not None and outcome.reason is not None
            evidence = await asyncio.to_thread(
                collect_evidence, check, outcome.failing_since - EVIDENCE_LOOKBACK_SECONDS
            )
            upstreams = {name: await _state_of(by_name[name], ctx) for name in plan.upstreams}
        finally:
            await check.aclose()
    for py_spy in (False, True):
        outcome.expected_evidence[py_spy] = _evidence_text(scenario, run, py_spy)
        outcome.diagnoses[py_spy] = await asyncio.to_thread(
            diagnose,
            settings,
            reason=outcome.reason,
            failing_since=outcome.failing_since,
            last_healthy_at=outcome.last_healthy_at,
            evidence=evidence,
            upstreams=upstreams,
            config_path=run.config_path,
            py_spy=py_spy,
        )


def _evidence_text(scenario: Scenario, run: Run, py_spy: bool) -> str:
    wanted = (scenario.evidence_with_py_spy if py_spy else None) or scenario.evidence
    return wanted(run) if callable(wanted) else wanted


async def _look(check: Check[Any], settings: MonitorSettings, ctx: ProbeContext) -> CheckResult:
    if check.inline:
        return (await asyncio.to_thread(run_inline, check, ctx)).result
    return (await run_check(check, ctx, timeout=check.timeout_seconds(settings.check_timeout_seconds))).result


async def _watch(
    run: Run, plan: Plan, settings: MonitorSettings, check: Check[Any], ctx: ProbeContext, outcome: Outcome
) -> None:
    """Look until the check saw the service healthy, let the world act, then until it failed enough times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    healthy_looks = 0
    failures = 0
    triggered = plan.trigger is None
    while True:
        result = await _look(check, settings, ctx)
        wall = time.time()
        outcome.looks.append(f"{wall:.2f} {result.status.value}: {result.reason}")
        failing = run.marker.exists()
        if failing and plan.loop_message is not None and run.restarts_at_failure is None:
            run.restarts_at_failure = run.restarts()
        if result.status is Status.HEALTHY:
            if not healthy_looks:
                deadline = loop.time() + FAILURE_TIMEOUT
            healthy_looks += 1
            failures = 0
            outcome.failing_since = None
        elif result.status is Status.UNHEALTHY and healthy_looks:  # before the first healthy look: starting
            if not failing:
                raise AssertionError(f"the check failed before the service entered its failure state: {result.reason}")
            failures += 1
            if outcome.failing_since is None:
                outcome.failing_since = wall
            if failures >= settings.min_failures_to_heal:
                outcome.reason = result.reason
                outcome.last_healthy_at = run.marker.stat().st_mtime
                return
        if not triggered and healthy_looks >= plan.healthy_looks:
            triggered = True
            assert plan.trigger is not None
            await asyncio.to_thread(plan.trigger)
        if not healthy_looks and plan.loop_message is None and not run.service_processes():
            raise AssertionError(f"the service exited before it was seen healthy: {_tail(plan.output)}")
        if loop.time() > deadline:
            stage = "fail" if healthy_looks else "be healthy"
            raise AssertionError(f"the check did not see the service {stage} in time; last: {result.reason}")
        await asyncio.sleep(settings.interval_seconds)


def _wait_for_restarts(run: Run, plan: Plan) -> None:
    if not plan.steady_restarts:
        return
    base = run.restarts_at_failure or 0
    deadline = time.monotonic() + FAILURE_TIMEOUT
    while run.restarts() < base + plan.steady_restarts:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the loop did not restart the service {plan.steady_restarts} times: {_tail(plan.output)}"
            )
        time.sleep(0.05)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no output: {exc})"


async def _state_of(settings: MonitorSettings, ctx: ProbeContext) -> str:
    """An upstream monitor's state in the words the daemon gives the diagnosis: ``status: reason``."""
    check = build_check(settings.check)
    await check.open()
    try:
        result = await _look(check, settings, ctx)
    finally:
        await check.aclose()
    return f"{result.status.value}: {result.reason}"


# -- many runs and their verdicts -----------------------------------------------------------------------


def use_py_spy_from_venv() -> bool:
    """Put the venv's bin (where py-spy is installed) on PATH, for the diagnoses made with py-spy."""
    path = os.environ.get("PATH", "")
    if str(PY_SPY_BIN) not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(PY_SPY_BIN), path])
    return shutil.which("py-spy") is not None


def run_corpus(scenarios: Iterable[Scenario], *, workers: int = 6) -> dict[str, Outcome]:
    """Run every scenario (``workers`` at a time), each in its own thread; outcomes by scenario name."""
    use_py_spy_from_venv()
    root = Path(tempfile.mkdtemp(prefix="horus-corpus-", dir="/tmp"))
    root.chmod(0o755)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scenario") as pool:
            futures = {pool.submit(_run_with_one_retry, s, root): s.name for s in scenarios}
            return {futures[f]: f.result() for f in concurrent.futures.as_completed(futures)}
    finally:
        if not KEEP:
            shutil.rmtree(root, ignore_errors=True)


def _run_with_one_retry(scenario: Scenario, root: Path) -> Outcome:
    """A run whose set-up failed (the service was not healthy in time, or failed before its failure began,
    on a loaded machine) measured nothing about Sentinel: it is run once more, in a directory of its own.
    A wrong diagnosis is never retried."""
    outcome = run_scenario(scenario, root)
    if outcome.error is None:
        return outcome
    again = root / "again"
    again.mkdir(exist_ok=True)
    again.chmod(0o755)
    return run_scenario(scenario, again)


def misses(outcome: Outcome, py_spy: bool) -> list[str]:
    """What the diagnosis made with (or without) py-spy got wrong, in words; empty when it is right."""
    if outcome.error:
        return [f"the run failed: {outcome.error.strip().splitlines()[-1]}"]
    scenario = outcome.scenario
    diagnosis = outcome.diagnoses.get(py_spy)
    if diagnosis is None or not diagnosis.hypotheses:
        return ["no diagnosis"]
    top = diagnosis.top
    expected = scenario.expected_cause(py_spy)
    wrong = []
    if top.cause != expected:
        wrong.append(f"top-1 is {top.cause} ({top.title!r}), expected {expected}")
    wanted = outcome.expected_evidence[py_spy]
    if not any(wanted.lower() in line.lower() for line in top.evidence):
        wrong.append(f"no evidence line of the top hypothesis holds {wanted!r}")
    if expected in NOT_PROBABLE and top.confidence >= PROBABLE:
        wrong.append(f"confidence {top.confidence:.2f} claims a probable cause the evidence cannot support")
    if expected not in NOT_PROBABLE and top.confidence < PROBABLE:
        wrong.append(f"confidence {top.confidence:.2f} is below probable")
    return wrong
