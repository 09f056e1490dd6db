"""What a failing service looked like when the failure was detected, taken before anything heals it.

A kill erases the evidence: the hung process, its stacks, its CPU and memory, the port it held. So when
a monitor crosses its failure threshold the engine calls :func:`take_snapshot` (in a thread, before the
heal acts) and keeps the result with the incident. Every probe that applies to the monitor is derived
from its check, verify and heal options, and from its ``evidence`` block (its service's own logs, process
pattern and crash_dir, whatever the check type):

- ``processes``: each ``process_pattern`` (``kill_process``, ``process_alive``, ``evidence``), matched
  exactly as the heal matches (never Horus, its ancestors or its descendants): pid, command line (secrets
  masked), status, CPU, memory, threads, open descriptors (``num_fds``), the ``nofile`` and ``as`` limits
  (``rlimits``, ``[soft, hard]``, -1 for unlimited; Linux), age and listening TCP ports; or not running.
- ``py_spy``: ``py-spy dump --pid PID`` of each matched Python process, when py-spy is installed.
- ``ports``: each ``port_open`` address, accepting or not, and when the address is this machine's, the
  ``holder`` listening there (pid, name, masked command line, user; ``null`` when nothing listens).
- ``http``: each ``http_health`` URL, status and latency (redirects are never followed); a loopback URL's
  ``holder`` too.
- ``logs``: each ``log_file`` and ``evidence.logs`` (a regular file, never a pipe): age, size, its last
  lines (``tail``, each redacted of secrets), ``lines_before_tail`` (in the last 256 KiB read) and the
  ``baseline``: the lines written while the service was still healthy (``healthy_until``), normalised
  as fingerprints are and counted, most frequent first (a line that repeated then explains little now);
  and ``since_healthy``: what went wrong before the tail once the healthy period had ended (the first of
  each distinct line of trouble, a crash report whole), which loud output may have pushed out of the tail.
- ``disk``: free space on each filesystem holding a log, a checked output path or a crash_dir.
- ``heartbeats``: each heartbeat file: pid, age and the age of each channel.
- ``trading``: each control dir of a ``trading`` check or ``halt`` heal: the bot's mode and what holds it
  there, its broker connection, counters, exposure and flatten from ``status.json``, and its last
  ``decisions`` (horus-sdk's decision log): what the bot saw and decided before it failed.
- ``runner``: each runner state dir (the monitor's ``runner``, a ``runner`` check's or ``runner_restart`` heal's
  ``dir``): the runner's pid and state (and why), the ``active`` and ``standby`` instances (pid, version,
  epoch, and whether that very process is alive: pid and start time), ``previous_version``, ``restarts``,
  ``last_exit`` and the last 5 ``reloads``. The runner's active and standby instances are also described
  under ``processes`` (``"runner": "active"``), by their exact pids, and dumped by py-spy.
- ``crash``: the crash record the engine passes in (``Check.evidence``), with where it was stuck; when
  it passes none, the newest record in a heartbeat's or the evidence block's ``crash_dir`` that the
  service wrote, even one older than this failure (``"source": "crash_dir"``, with ``records_in_dir``).

Sample (abridged)::

    {"format": "horus-snapshot/1", "monitor": "bot", "taken_at": 1795227443.6, "elapsed_ms": 231.4,
     "truncated": false,
     "processes": [{"pattern": "bot.py", "regex": false, "running": true, "count": 1, "matches": [
        {"pid": 4121, "cmdline": "python3 bot.py --token ***", "name": "python3", "status": "sleeping",
         "cpu_percent": 0.0, "cpu_times": {"user": 1.2, "system": 0.3}, "rss_bytes": 89128960,
         "threads": 3, "num_fds": 12, "rlimits": {"nofile": [1024, 524288], "as": [-1, -1]},
         "create_time": 1795220243.6, "age_seconds": 7200.0, "listening_ports": [8080]}]}],
     "py_spy": {"dumps": [{"pid": 4121, "exit_code": 0, "output": "Thread 4121 (idle): ..."}]},
     "ports": [{"host": "127.0.0.1", "port": 8080, "accepting": true, "connect_ms": 0.2,
                "holder": {"pid": 4121, "name": "python3", "cmdline": "python3 bot.py --token ***",
                           "user": "knox"}}],
     "http": [{"url": "http://127.0.0.1:8080/health", "method": "GET", "status": 200, "latency_ms": 12.3,
               "body_head": "ok", "holder": {"pid": 4121, ...}}],
     "logs": [{"path": "/srv/bot/bot.log", "size_bytes": 5120, "age_seconds": 312.0, "tail": ["..."],
               "lines_before_tail": 61, "baseline": [{"line": "<ts> info fetched <n> markets", "count": 52}]}],
     "disk": [{"path": "/srv/bot", "free_bytes": 0, "total_bytes": 104857600, "used_percent": 100.0}],
     "heartbeats": [{"path": "/srv/bot/hb.json", "pid": 4121, "sequence": 42, "age_seconds": 3.5,
                     "channels": {"scan": {"age_seconds": 3.1, "count": 17}}}],
     "crash": {"crash_record": "/srv/bot/horus-crash-4121.json", "crash_summary": "...", "kind": "loop_blocked",
               "reason": "event loop blocked for 12.0 s", "stuck": {"file": "bot.py", "line": 42,
               "function": "place_maker_order", "code": "..."}, "operations": [...]}}

A probe that fails says so in its own entry (``"error": "..."``); :func:`take_snapshot` never raises.
``json.dumps(snapshot)`` never exceeds ``max_bytes``: log baselines, then log tails, then py-spy output are
trimmed first and ``"truncated": true`` says so.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psutil

from horus import humanize
from horus.checks.artifact_growth import ArtifactGrowthOptions
from horus.checks.base import CheckOptions
from horus.checks.file_exists import FileExistsOptions
from horus.checks.heartbeat import HeartbeatOptions
from horus.checks.http_health import HttpHealthOptions
from horus.checks.port_open import PortOpenOptions
from horus.checks.runner import RunnerOptions, same_process
from horus.checks.trading import TradingOptions
from horus.config.models import EvidenceOptions, MonitorSettings
from horus.config.types import ProcessPatternOptions
from horus.errors import ExecError
from horus.execution import CommandResult, run_command
from horus.heals.base import HealOptions
from horus.heals.halt import HaltOptions
from horus.heals.runner_restart import RunnerRestartOptions
from horus.log import redact_url
from horus.processes import ProcessIdentity, display_cmdline, find_matching, uid_of
from horus.redaction import redact_line, redact_tree
from horus.sentinel.fingerprint import normalise
from horus.sentinel.logtext import CRASH_START, TELLING, healthy_period_end, read_lines, time_of
from horus_sdk.control_files import DECISION_LOG_FILE
from horus_sdk.control_files import read_status as read_trading_status
from horus_sdk.decisions import tail as decision_tail
from horus_sdk.formats import FORMAT_CRASH, FORMAT_HEARTBEAT, boot_id, crash_summary, file_kind, read_json
from horus_sdk.runner_files import read_runner_state

__all__ = ["SNAPSHOT_FORMAT", "describe_process_state", "log_tail", "redact_line", "take_snapshot"]

SNAPSHOT_FORMAT = "horus-snapshot/1"
# CPU percent is a rate: it needs two readings this far apart.
CPU_SAMPLE_SECONDS = 0.2
# Each probe's own limit; all of them also end by the snapshot's overall timeout.
PORT_TIMEOUT_SECONDS = 2.0
HTTP_TIMEOUT_SECONDS = 5.0
PY_SPY_TIMEOUT_SECONDS = 5.0
# A log's tail is read from at most this many bytes before its end, so a 10 GB log costs one seek.
LOG_TAIL_BYTES = 256 * 1024
# Non-blocking: a log path that is (or became) a named pipe must never hold the snapshot up.
_LOG_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
LINE_LIMIT = 1000
# How far before the tail the start of a crash report is looked for (a goroutine dump runs long).
CRASH_LOOKBACK_LINES = 400
# What went wrong before the tail since the healthy period ended: at most this many lines, a crash report
# at most CRASH_REPORT_LINES of them.
SINCE_HEALTHY_LINES = 60
CRASH_REPORT_LINES = 30
JSON_LINE_LIMIT = 16 * 1024
# A log's baseline: the lines it repeated while the service was healthy, normalised and counted.
BASELINE_ENTRIES = 100
BASELINE_LINE_LIMIT = 300
# Parsing a line costs about 30 µs and normalising one 50 to 150 µs, so a baseline reads at most the last
# BASELINE_RAW_LINES lines before the tail and counts the newest healthy ones (the ones worth comparing with
# the end) for at most BASELINE_SECONDS: 16 logs stay within a few seconds. Baselines stop short of the
# snapshot's deadline by BASELINE_RESERVE_SECONDS, so they never cost a log its tail.
BASELINE_RAW_LINES = 4000
BASELINE_LINES_COUNTED = 2000
BASELINE_SECONDS = 0.1
BASELINE_RESERVE_SECONDS = 1.0
CMDLINE_LIMIT = 1000
PROCESSES_PER_PATTERN = 10
PY_SPY_PROCESSES = 3
HTTP_BODY_HEAD_BYTES = 256
# Listening sockets kept from one net_connections reading: a server has tens; more are not worth the memory.
MAX_LISTENERS = 10_000
# The SDK keeps 20 records of a few KB each; these bound a crash_dir that another process fills.
MAX_CRASH_DIR_ENTRIES = 1000
CRASH_RECORDS_TRIED = 5
CRASH_RECORD_MAX_BYTES = 4 * 1024 * 1024
# Time granted beyond ``timeout`` for probes that are already finishing, before they are reported late.
_LATE_GRACE_SECONDS = 0.5
_PYTHON_NAME = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?[dmu]?(?:\.exe)?$", re.IGNORECASE)

T = TypeVar("T")
# The processes described so far, by pid: psutil's handle (for the CPU sample) and the snapshot entry.
Found = dict[int, tuple[psutil.Process, dict[str, Any]]]

# --- redaction ---------------------------------------------------------------------------------------
# The patterns live in horus.redaction, shared with everything else Horus keeps or sends; redact_line
# stays importable from here.


def _redact_cmdline(cmdline: str) -> str:
    # display_cmdline masks ``--token VALUE`` and URLs; redact_line adds ``API_KEY=...`` and long secrets.
    return redact_line(display_cmdline(cmdline, limit=CMDLINE_LIMIT))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_line(line: str) -> str:
    """A log line as the snapshot keeps it. A JSON line is kept whole up to JSON_LINE_LIMIT, since cutting
    it makes it unreadable as JSON (a traceback in ``exc_info`` is often a few KB); others to LINE_LIMIT."""
    if len(line) > LINE_LIMIT and len(line) <= JSON_LINE_LIMIT and line.lstrip().startswith("{"):
        try:
            json.loads(line)
        except ValueError:
            pass
        else:
            return line
    return _clip_middle(line, LINE_LIMIT)


def _clip_middle(text: str, limit: int) -> str:
    """A long log line's start (its time, level and logger) and its end (where the error usually is)."""
    if len(text) <= limit:
        return text
    keep = limit - 3
    return f"{text[: keep // 2]} … {text[len(text) - (keep - keep // 2) :]}"


# --- the snapshot --------------------------------------------------------------------------------------


def take_snapshot(
    settings: MonitorSettings,
    *,
    crash_evidence: dict[str, Any] | None,
    max_bytes: int = 64 * 1024,
    py_spy: bool = True,
    log_lines: int = 40,
    timeout: float = 10.0,
    healthy_until: float | None = None,
) -> dict[str, Any]:
    """Everything observable about ``settings``'s service right now, as a JSON-ready dict.

    Synchronous and slow-ish (a CPU sample, a connect, an HTTP request, a py-spy dump: run concurrently,
    all done within ``timeout``): call it in a thread. Never raises; a probe that fails records its error
    in its own entry. ``crash_evidence`` is the dict from ``Check.evidence`` (``crash_record`` path and
    ``crash_summary``). ``healthy_until`` is when the service was last seen healthy: each log's baseline
    counts the lines written until then. ``json.dumps`` of the result is at most ``max_bytes`` long.
    """
    started = time.monotonic()
    snapshot: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "monitor": settings.name,
        "taken_at": round(time.time(), 3),
        "truncated": False,
    }
    try:
        deadline = started + timeout
        probes = _plan(
            settings,
            crash_evidence,
            py_spy=py_spy,
            log_lines=log_lines,
            deadline=deadline,
            healthy_until=healthy_until,
        )
        snapshot.update(_run_all(probes, deadline))
    except Exception as exc:  # a bug here must cost the snapshot, never the heal that follows it
        snapshot["error"] = f"snapshot failed: {exc!r}"
    snapshot["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    # What the service wrote or answered (its crash record, HTTP answers, heartbeat, errors in its words) keeps
    # no secret; log tails and command lines are masked where they are read.
    for key in _SERVICE_WORDS:
        if key in snapshot:
            snapshot[key] = redact_tree(snapshot[key])
    return _fit(snapshot, max_bytes)


Probe = Callable[[], Any]


def _plan(
    settings: MonitorSettings,
    crash_evidence: dict[str, Any] | None,
    *,
    py_spy: bool,
    log_lines: int,
    deadline: float,
    healthy_until: float | None,
) -> dict[str, Probe]:
    """The probes that apply to this monitor, by the snapshot key each one fills."""
    options = list(_all_options(settings))
    # The evidence block names what the check may not: the service's logs, process and crash records.
    evidence = settings.evidence
    patterns = _unique(_pattern_of(o) for o in options if isinstance(o, ProcessPatternOptions))
    if evidence is not None and evidence.process_pattern is not None:
        patterns = _unique([*patterns, (evidence.process_pattern, evidence.regex, evidence.user)])
    ports = _unique((o.host, o.port) for o in options if isinstance(o, PortOpenOptions))
    urls = _unique(o for o in options if isinstance(o, HttpHealthOptions))
    # By attribute: any check with a log_file (log_staleness today) has its log read.
    logs = _unique(
        [
            *(Path(getattr(o, "log_file")) for o in options if _has(o, "log_file")),  # noqa: B009
            *(evidence.logs if evidence else ()),
        ]
    )
    beats = _unique(o for o in options if isinstance(o, HeartbeatOptions))
    crash_dirs = _unique(
        [
            *(o.crash_dir for o in beats if o.crash_dir is not None),
            *([evidence.crash_dir] if evidence and evidence.crash_dir else []),
        ]
    )
    directories = _unique([*(path.parent for path in logs), *_output_directories(options), *crash_dirs])
    listeners = _Listeners()
    runner_dirs = _unique(
        [
            *([settings.runner] if settings.runner is not None else []),
            *(o.dir for o in options if isinstance(o, RunnerOptions | RunnerRestartOptions) and o.dir is not None),
        ]
    )

    probes: dict[str, Probe] = {}
    if patterns or runner_dirs:
        # One task: py-spy must look at exactly the processes found, before the heal kills them.
        probes["processes"] = lambda: _processes_and_stacks(
            patterns, py_spy=py_spy, deadline=deadline, runner_dirs=runner_dirs
        )
    if runner_dirs:
        probes["runner"] = lambda: _each(runner_dirs, _probe_runner)
    if ports:
        probes["ports"] = lambda: _each(ports, lambda address: _probe_port(address[0], address[1], deadline, listeners))
    if urls:
        probes["http"] = lambda: _each(urls, lambda o: _probe_http(o, deadline, listeners))
    if logs:
        probes["logs"] = lambda: _each(logs, lambda path: _probe_log(path, log_lines, healthy_until, deadline))
    if directories:
        probes["disk"] = lambda: _probe_disks(directories)
    if beats:
        probes["heartbeats"] = lambda: _each(beats, _probe_heartbeat)
    control_dirs = _unique(o.control_dir for o in options if isinstance(o, TradingOptions | HaltOptions))
    if control_dirs:
        probes["trading"] = lambda: _each(control_dirs, _probe_trading)
    if crash_evidence and crash_evidence.get("crash_record"):
        probes["crash"] = lambda: _probe_crash(crash_evidence)
    elif crash_dirs:
        # None since this episode began: the newest record the service left is still what it last said
        # about itself (an earlier hang, often at the same line), and outranks any guess.
        probes["crash"] = lambda: _newest_in_crash_dirs(crash_dirs, _crash_record_owner(crash_dirs, beats, evidence))
    elif crash_evidence:
        probes["crash"] = lambda: _probe_crash(crash_evidence)
    return probes


def _output_directories(options: list[CheckOptions | HealOptions]) -> Iterator[Path]:
    """Where the checks look for the service's output: a full disk there is why it stopped."""
    for o in options:
        if isinstance(o, FileExistsOptions):
            yield o.path.parent
        elif isinstance(o, ArtifactGrowthOptions):
            if o.glob is not None:
                yield o.glob.directory
            if o.file_size is not None:
                yield o.file_size.parent
            if o.sqlite is not None:
                yield o.sqlite.database.parent
        elif isinstance(o, HeartbeatOptions) and o.path is not None:
            yield o.path.parent  # the SDK writes it atomically: a full disk stops the beats


_SERVICE_WORDS = ("crash", "http", "heartbeats", "ports", "error", "trading", "runner")


def _pattern_of(options: object) -> tuple[str, bool, str | int | None]:
    assert isinstance(options, ProcessPatternOptions)
    # The service's user, as the check and the heal match it (another user's lookalike is not the service).
    return options.process_pattern, options.regex, getattr(options, "user", None)


def _all_options(settings: MonitorSettings) -> Iterator[CheckOptions | HealOptions]:
    yield settings.check
    if settings.verify is not None:
        yield settings.verify
    yield from settings.escalation or ((settings.heal,) if settings.heal is not None else ())


def _has(options: object, name: str) -> bool:
    return getattr(options, name, None) is not None


def _unique(items: Any) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _each(items: list[T], probe: Callable[[T], dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per item; a probe that breaks on one item still reports the others."""
    entries = []
    for item in items:
        try:
            entries.append(probe(item))
        except Exception as exc:
            entries.append({"error": f"probe failed: {exc!r}"})
    return entries


_ORDER = ("processes", "py_spy", "runner", "ports", "http", "logs", "disk", "heartbeats", "trading", "crash")


def _run_all(probes: dict[str, Probe], deadline: float) -> dict[str, Any]:
    """Run every probe at once; one still running at the deadline is reported, not waited for."""
    if not probes:
        return {}
    results: dict[str, Any] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="horus-snapshot")
    try:
        futures = {pool.submit(probe): key for key, probe in probes.items()}
        done, late = concurrent.futures.wait(
            futures, timeout=max(0.0, deadline - time.monotonic()) + _LATE_GRACE_SECONDS
        )
        for future in done:
            key = futures[future]
            try:
                value = future.result()
            except Exception as exc:
                value = _failed(key, f"probe failed: {exc!r}")
            if value is None:
                continue  # the probe found nothing to report (an empty crash_dir)
            if key == "processes" and isinstance(value, tuple):
                results["processes"], results["py_spy"] = value
            else:
                results[key] = value
        for future in late:
            results[futures[future]] = _failed(futures[future], "did not finish within the snapshot's time limit")
    finally:
        # Every probe has its own time limit, so a late one ends soon; the caller need not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)
    return {key: results[key] for key in _ORDER if key in results}


def _failed(key: str, error: str) -> Any:
    # Sections other than the crash record are lists, and stay lists when their probe breaks.
    return {"error": error} if key == "crash" else [{"error": error}]


# --- processes and py-spy ------------------------------------------------------------------------------


def _processes_and_stacks(
    patterns: list[tuple[str, bool, str | int | None]],
    *,
    py_spy: bool,
    deadline: float,
    runner_dirs: list[Path] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sections: list[dict[str, Any]] = []
    found: Found = {}
    # The runner's instances first: their pids are exact, where a pattern's matches are only likely.
    for runner_dir in runner_dirs or ():
        sections.extend(_runner_instances(runner_dir, found))
    for pattern, regex, user in patterns:
        section: dict[str, Any] = {"pattern": pattern, "regex": regex}
        try:
            matches = find_matching(pattern, regex=regex, uid=uid_of(user))
        except LookupError as exc:
            section["error"] = str(exc)
            sections.append(section)
            continue
        except (OSError, psutil.Error) as exc:
            section["error"] = f"cannot list processes: {exc}"
            sections.append(section)
            continue
        section["running"] = bool(matches)
        section["count"] = len(matches)
        described = []
        for identity in matches[:PROCESSES_PER_PATTERN]:
            entry = found[identity.pid][1] if identity.pid in found else _describe_process(identity, found)
            described.append(entry)
        section["matches"] = described
        sections.append(section)
    _sample_cpu(found)
    return sections, _py_spy(found, enabled=py_spy, deadline=deadline)


def _runner_instances(runner_dir: Path, found: Found) -> list[dict[str, Any]]:
    """A section for each instance the runner names (active, standby): that very process, or not running."""
    try:
        state = read_runner_state(runner_dir)
    except (OSError, ValueError) as exc:
        return [{"runner": "active", "runner_dir": str(runner_dir), "error": f"runner.json unreadable: {exc}"}]
    sections = []
    for role in ("active", "standby"):
        instance = state.get(role)
        if not isinstance(instance, dict):
            continue
        pid = instance.get("pid")
        section: dict[str, Any] = {"runner": role, "runner_dir": str(runner_dir), "pid": pid}
        identity = None
        if isinstance(pid, int) and same_process(pid, instance.get("process_start")):
            with contextlib.suppress(psutil.Error, OSError):
                identity = ProcessIdentity.of(pid)
        section["running"] = identity is not None
        section["count"] = 1 if identity is not None else 0
        if identity is not None:
            entry = found[identity.pid][1] if identity.pid in found else _describe_process(identity, found)
            section["matches"] = [entry]
        else:
            section["matches"] = []
        sections.append(section)
    return sections


def _describe_process(identity: ProcessIdentity, found: Found) -> dict[str, Any]:
    entry: dict[str, Any] = {"pid": identity.pid}
    try:
        proc = psutil.Process(identity.pid)
        with proc.oneshot():
            if proc.create_time() != identity.create_time:
                entry["error"] = "exited while it was read (its pid now belongs to another process)"
                return entry
            entry["cmdline"] = _redact_cmdline(identity.cmdline)
            entry["name"] = _optional(proc.name)
            entry["status"] = _optional(proc.status)
            entry["cpu_percent"] = None  # filled in by _sample_cpu
            times = _optional(proc.cpu_times)
            entry["cpu_times"] = {"user": round(times.user, 2), "system": round(times.system, 2)} if times else None
            memory = _optional(proc.memory_info)
            entry["rss_bytes"] = memory.rss if memory else None
            entry["threads"] = _optional(proc.num_threads)
            # "Too many open files" and a MemoryError under a limit are told by these two, read before the kill.
            if hasattr(proc, "num_fds"):
                entry["num_fds"] = _optional(proc.num_fds)
            if hasattr(proc, "rlimit"):
                entry["rlimits"] = _optional(lambda: _limits(proc))
            entry["create_time"] = round(identity.create_time, 3)
            entry["age_seconds"] = round(max(0.0, time.time() - identity.create_time), 1)
            entry["listening_ports"] = _listening_ports(proc)
            entry["_python"] = _is_python(proc, identity.cmdline)
            with contextlib.suppress(psutil.Error):
                proc.cpu_percent(None)  # the first reading, which _sample_cpu compares against
    except psutil.NoSuchProcess:
        entry["error"] = "exited while it was read"
        return entry
    except psutil.Error as exc:
        entry["error"] = f"cannot read it: {exc}"
        return entry
    found[identity.pid] = (proc, entry)
    return entry


def _optional(read: Callable[[], T]) -> T | None:
    """One psutil reading, or None where this process's field may not be read (macOS: other users')."""
    try:
        return read()
    except psutil.AccessDenied:
        return None


def _limits(proc: psutil.Process) -> dict[str, list[int]]:
    # [soft, hard]; psutil gives -1 (RLIM_INFINITY) for unlimited.
    return {
        "nofile": list(proc.rlimit(psutil.RLIMIT_NOFILE)),
        "as": list(proc.rlimit(psutil.RLIMIT_AS)),
    }


def _listening_ports(proc: psutil.Process) -> list[int] | None:
    try:
        connections = proc.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None
    return sorted({c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr})


def _is_python(proc: psutil.Process, cmdline: str) -> bool:
    names = [cmdline.split(" ", 1)[0], _optional(proc.name) or ""]
    with contextlib.suppress(psutil.Error, OSError):
        names.append(proc.exe())
    return any(_PYTHON_NAME.match(os.path.basename(name)) for name in names if name)


def _sample_cpu(found: Found) -> None:
    if not found:
        return
    time.sleep(CPU_SAMPLE_SECONDS)  # one wait for all the processes
    for proc, entry in found.values():
        try:
            entry["cpu_percent"] = round(proc.cpu_percent(None), 1)
        except psutil.Error:
            entry["cpu_percent"] = None


def _py_spy(found: Found, *, enabled: bool, deadline: float) -> dict[str, Any]:
    python_pids = [pid for pid, (_proc, entry) in found.items() if entry.get("_python")]
    for _proc, entry in found.values():
        entry.pop("_python", None)  # private to this module: not part of the snapshot
    if not enabled:
        return {"skipped": "disabled in the config (sentinel.py_spy: false)"}
    if not python_pids:
        return {"skipped": "no running Python process matched"}
    if shutil.which("py-spy") is None:
        return {"skipped": "py-spy is not installed"}
    dumps = []
    for pid in python_pids[:PY_SPY_PROCESSES]:
        remaining = deadline - time.monotonic()
        if remaining <= 0.1:
            dumps.append({"pid": pid, "error": "no time left in the snapshot's limit"})
            continue
        dumps.append(_py_spy_dump(pid, min(PY_SPY_TIMEOUT_SECONDS, remaining)))
    return {"dumps": dumps}


def _py_spy_dump(pid: int, timeout: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"pid": pid}
    try:
        result: CommandResult = _run_coroutine(
            # Whole file names: a frame in the standard library or site-packages is told from the service's own.
            lambda: run_command(["py-spy", "dump", "--full-filenames", "--pid", str(pid)], timeout=timeout)
        )
    except ExecError as exc:
        entry["error"] = str(exc)
        return entry
    entry["exit_code"] = result.exit_code
    output = "\n".join(redact_line(line) for line in result.output_tail.splitlines())
    entry["output"] = output
    if not result.ok:
        last = result.last_line() or f"exit status {result.exit_code}"
        hint = ""
        if "permission" in result.output_tail.lower() or "ptrace" in result.output_tail.lower():
            hint = " (py-spy needs to ptrace the process: run Horus as the same user with ptrace allowed, or as root)"
        entry["error"] = redact_line(last) + hint
    return entry


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, in a thread with no event loop if need be."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="horus-snapshot-run")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- ports and HTTP ------------------------------------------------------------------------------------


def _budget(cap: float, deadline: float) -> float:
    return max(0.05, min(cap, deadline - time.monotonic()))


def _probe_port(host: str, port: int, deadline: float, listeners: _Listeners) -> dict[str, Any]:
    entry: dict[str, Any] = {"host": host, "port": port}
    limit = _budget(PORT_TIMEOUT_SECONDS, deadline)
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=limit):
            pass
    except ConnectionRefusedError:
        entry.update(accepting=False, detail="connection refused")
    except TimeoutError:
        entry.update(accepting=False, detail=f"no answer within {humanize.seconds(limit)}")
    except socket.gaierror as exc:
        entry.update(accepting=False, detail=f"cannot resolve {host} ({exc.strerror})")
    except OSError as exc:
        entry.update(accepting=False, detail=exc.strerror or str(exc))
    else:
        entry.update(accepting=True, connect_ms=round((time.monotonic() - started) * 1000, 1))
    if listeners.applies_to(host):
        entry["holder"] = listeners.holder(host, port)
    return entry


def _probe_http(options: HttpHealthOptions, deadline: float, listeners: _Listeners) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": redact_url(options.url), "method": options.method}
    limit = _budget(HTTP_TIMEOUT_SECONDS, deadline)
    parts = urlsplit(options.url)
    host = parts.hostname or ""
    headers = dict(options.headers)
    if parts.username is not None and not any(name.lower() == "authorization" for name in headers):
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        if not options.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, parts.port, timeout=limit, context=context)
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=limit)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        # http.client never follows redirects: a snapshot must not wander to another host.
        connection.request(options.method, target, headers=headers)
        response = connection.getresponse()
        entry["status"] = response.status
        entry["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        if 300 <= response.status < 400 and response.getheader("location"):
            entry["location"] = redact_url(response.getheader("location") or "")
        if options.method != "HEAD":
            head = response.read(HTTP_BODY_HEAD_BYTES).decode("utf-8", errors="replace")
            entry["body_head"] = redact_line(" ".join(head.split()))
    except ConnectionRefusedError:
        entry["error"] = "connection refused"
    except TimeoutError:
        entry["error"] = f"no answer within {humanize.seconds(limit)}"
    except ssl.SSLError as exc:
        entry["error"] = f"TLS failure: {exc.reason or exc}"
    except socket.gaierror as exc:
        entry["error"] = f"cannot resolve {host} ({exc.strerror})"
    except http.client.HTTPException as exc:
        entry["error"] = f"not a valid HTTP answer ({type(exc).__name__})"
    except OSError as exc:
        entry["error"] = exc.strerror or str(exc)
    finally:
        connection.close()
    if _is_loopback(host):
        default_port = 443 if parts.scheme == "https" else 80
        entry["holder"] = listeners.holder(host, parts.port or default_port)
    return entry


class _Listeners:
    """Who listens on this machine's TCP ports, read at most once per snapshot and shared by its probes.

    A port a check finds refused, or answered by the wrong program, is explained by its holder: the
    service's previous instance that never let go, or another program that took the port first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_port: dict[int, list[tuple[str, int | None]]] | None = None
        self._error: str | None = None
        self._own_addresses: set[str] | None = None

    def applies_to(self, host: str) -> bool:
        """Whether ``host`` is this machine, so a listener here is what a connection to it reaches."""
        if _is_loopback(host) or host in _EVERY_ADDRESS:
            return True
        with self._lock:
            if self._own_addresses is None:
                try:
                    self._own_addresses = {
                        address.address.split("%", 1)[0]
                        for addresses in psutil.net_if_addrs().values()
                        for address in addresses
                    }
                except (OSError, psutil.Error):
                    self._own_addresses = set()
            return host in self._own_addresses

    def holder(self, host: str, port: int) -> dict[str, Any] | None:
        """The process listening where a connection to ``host:port`` arrives, None when nothing listens,
        or ``{"error": ...}`` when the sockets or their owner may not be read."""
        with self._lock:
            if self._by_port is None and self._error is None:
                self._read()
        if self._error is not None:
            return {"error": self._error}
        assert self._by_port is not None
        bound = self._by_port.get(port, [])
        wanted = {"127.0.0.1", "::1"} if host.lower() == "localhost" else {host.strip("[]")}
        # A socket bound to the very address first, then one bound to every address.
        exact = [pid for address, pid in bound if address in wanted]
        wildcard = [pid for address, pid in bound if address in _EVERY_ADDRESS]
        candidates = exact or wildcard
        if not candidates:
            return None
        known = sorted(pid for pid in candidates if pid is not None)
        if not known:
            return {"error": "a process Horus may not inspect listens there (another user's)"}
        return _describe_holder(known[0])

    def _read(self) -> None:
        try:
            # Listening is TCP's state only: kind="tcp" reads the same sockets as "inet" without the UDP tables.
            connections = psutil.net_connections(kind="tcp")
        except psutil.AccessDenied:
            self._error = "cannot list listening sockets: permission denied (this system shows them only to root)"
            return
        except (OSError, psutil.Error) as exc:
            self._error = f"cannot list listening sockets: {exc}"
            return
        by_port: dict[int, list[tuple[str, int | None]]] = {}
        kept = 0
        for connection in connections:
            if connection.status != psutil.CONN_LISTEN or not connection.laddr:
                continue
            if kept >= MAX_LISTENERS:
                break
            address = connection.laddr.ip.removeprefix("::ffff:")  # an IPv4 address on a dual-stack socket
            by_port.setdefault(connection.laddr.port, []).append((address, connection.pid))
            kept += 1
        self._by_port = by_port


# How a socket listening on every address shows its local address.
_EVERY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (compared against, never bound)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _describe_holder(pid: int) -> dict[str, Any]:
    holder: dict[str, Any] = {"pid": pid}
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            holder["name"] = _optional(proc.name)
            argv = _optional(proc.cmdline)
            holder["cmdline"] = _redact_cmdline(" ".join(argv)) if argv else None
            holder["user"] = _optional(proc.username)
    except psutil.NoSuchProcess:
        holder["error"] = "exited while it was read"
    except psutil.Error as exc:
        holder["error"] = f"cannot read it: {exc}"
    return holder


# --- files ---------------------------------------------------------------------------------------------


def _probe_log(path: Path, log_lines: int, healthy_until: float | None, deadline: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path)}
    try:
        st, start, data = _read_end(path, LOG_TAIL_BYTES if log_lines > 0 else 0)
    except FileNotFoundError:
        entry["error"] = "does not exist"
        return entry
    except _NotRegular as exc:
        entry["error"] = f"cannot read it: {exc}"
        return entry
    except OSError as exc:
        entry["error"] = f"cannot read it: {exc.strerror or exc}"
        return entry
    entry["size_bytes"] = st.st_size
    entry["age_seconds"] = round(max(0.0, time.time() - st.st_mtime), 3)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # began mid-line
    tail = lines[-log_lines:] if log_lines > 0 else []
    before = lines[: len(lines) - len(tail)]
    if tail and not any(CRASH_START.search(line) for line in tail):
        # A crash report longer than the tail (a Go panic's goroutine dump) keeps its first line: what crashed.
        for index in range(len(before) - 1, max(-1, len(before) - 1 - CRASH_LOOKBACK_LINES), -1):
            if CRASH_START.search(before[index]):
                tail, before = before[index:] + tail, before[:index]
                break
    entry["tail"] = [_clip_line(redact_line(line)) for line in tail]
    entry["lines_before_tail"] = len(before)
    timed = [line.at for line in read_lines(tail) if line.at is not None]
    stopped = max(timed) if timed else st.st_mtime
    healthy_end = healthy_period_end(healthy_until, stopped)
    # Each gets its own time (the line that began the failure first), never the snapshot's last second.
    entry["since_healthy"] = _since_healthy(before, healthy_end, _reading_budget(deadline))
    entry["baseline"] = _baseline(before, healthy_end, _reading_budget(deadline))
    return entry


def _reading_budget(deadline: float) -> float:
    return min(deadline - BASELINE_RESERVE_SECONDS, time.monotonic() + BASELINE_SECONDS)


def _since_healthy(before: list[str], healthy_end: float | None, until: float) -> list[str]:
    """What went wrong before the tail once the healthy period had ended: the first of each distinct line
    that speaks of trouble, and each crash report whole, oldest first. Loud output after a failure pushes
    the line that began it out of the tail; this keeps it."""
    if healthy_end is None or not before:
        return []
    window = before[-BASELINE_RAW_LINES:]
    kept: list[str] = []
    seen: set[str] = set()
    last_time: float | None = None
    index = 0
    while index < len(window) and len(kept) < SINCE_HEALTHY_LINES:
        if index % 200 == 199 and time.monotonic() > until:
            break  # the tail and the rest of the snapshot matter more than the oldest lines of trouble
        line = window[index]
        at = time_of(line)
        last_time = at if at is not None else last_time
        index += 1
        if last_time is None or last_time <= healthy_end or not TELLING.search(line):
            continue
        block = [line]
        if CRASH_START.search(line):  # the whole report, to its end or the next report
            while index < len(window) and len(block) < CRASH_REPORT_LINES and not CRASH_START.search(window[index]):
                if time_of(window[index]) is not None:
                    break
                block.append(window[index])
                index += 1
        key = normalise(block[-1])
        if key in seen:
            continue
        seen.add(key)
        kept.extend(_clip_line(redact_line(text)) for text in block)
    return kept[:SINCE_HEALTHY_LINES]


class _NotRegular(OSError):
    """A log path that names a pipe, a directory or a device: never read."""


def _read_end(path: Path, limit: int) -> tuple[os.stat_result, int, bytes]:
    """The last ``limit`` bytes of the regular file ``path``, its stat, and the offset they start at.

    Looked at before it is opened (a device is never opened), opened non-blocking (a named pipe swapped in
    since the look cannot block), and looked at again through the descriptor; raises _NotRegular saying
    what the path is instead.
    """
    _require_regular(os.stat(path))
    fd = os.open(path, _LOG_OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        _require_regular(st)
        start = max(0, st.st_size - limit)
        data = os.pread(fd, limit, start) if limit > 0 else b""
    finally:
        os.close(fd)
    return st, start, data


def _require_regular(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _NotRegular(f"{file_kind(st.st_mode)}, not a regular file")


def _baseline(before: list[str], healthy_until: float | None, until: float) -> list[dict[str, Any]]:
    """The lines of ``before`` that were written while the service was healthy, normalised, counted, most
    frequent first: a line that also repeated then is weak evidence of what broke it.

    A line counts when its time (or the time of the line before it) is at most ``healthy_until`` (the end
    of the healthy period, :func:`~horus.sentinel.logtext.healthy_period_end`); a log whose lines carry
    no time has none. Counted newest first, until ``until`` (monotonic) at the latest.
    """
    if healthy_until is None or not before or time.monotonic() >= until:
        return []
    parsed = read_lines(before[-BASELINE_RAW_LINES:])
    # A log whose lines carry no time has no baseline: nothing tells its healthy lines from the failure's.
    healthy = [line.text for line in parsed if line.at is not None and line.at <= healthy_until]
    counts: Counter[str] = Counter()
    for counted, text in enumerate(reversed(healthy[-BASELINE_LINES_COUNTED:])):
        if counted % 100 == 99 and time.monotonic() > until:
            break
        # Redacted first: normalising keeps words such as "password=hunter2" as they are.
        line = _clip(normalise(redact_line(text)), BASELINE_LINE_LIMIT)
        if line:
            counts[line] += 1
    return [{"line": line, "count": count} for line, count in counts.most_common(BASELINE_ENTRIES)]


def _probe_disks(directories: list[Path]) -> list[dict[str, Any]]:
    """Free space on each filesystem the service writes to, once per filesystem, in the order first named."""
    entries: list[dict[str, Any]] = []
    devices: set[int] = set()
    for directory in directories:
        try:
            existing, st = _nearest_existing(directory)
        except OSError as exc:
            entries.append({"path": str(directory), "error": f"cannot look at it: {exc.strerror or exc}"})
            continue
        if st.st_dev in devices:
            continue
        devices.add(st.st_dev)
        entry: dict[str, Any] = {"path": str(existing)}
        try:
            usage = shutil.disk_usage(existing)
        except OSError as exc:
            entry["error"] = f"cannot measure it: {exc.strerror or exc}"
        else:
            # As df counts: of the space the service may use, the blocks reserved for root left out.
            usable = usage.used + usage.free
            entry.update(
                free_bytes=usage.free,
                total_bytes=usage.total,
                used_percent=round(100 * usage.used / usable, 1) if usable else None,  # None: a pseudo-filesystem
            )
        entries.append(entry)
    return entries


def _nearest_existing(directory: Path) -> tuple[Path, os.stat_result]:
    """``directory``, or its nearest ancestor that exists (a missing output directory is on its parent's disk)."""
    for candidate in (directory, *directory.parents):
        try:
            return candidate, os.stat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue
    raise FileNotFoundError(f"no part of {directory} exists")


# What a trading bot's status says of its mode, and how many of its last decisions an incident keeps: enough
# to see what it saw before it failed (seed 002: "the log is the only witness"), small next to 64 KiB.
_TRADING_FIELDS = (
    "pid",
    "mode",
    "cause",
    "causes",
    "applied_seq",
    "control",
    "control_error",
    "broker",
    "counters",
    "recent_failures",
    "exposure",
    "flatten",
    "daily_loss",
    "stale_feeds",
    "reconcile",
)
DECISIONS_KEPT = 20


RELOADS_KEPT = 5


def _probe_runner(runner_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"runner_dir": str(runner_dir)}
    try:
        state = read_runner_state(runner_dir)
    except FileNotFoundError:
        entry["error"] = "no runner.json: the runner has not started here"
        return entry
    except (OSError, ValueError) as exc:
        entry["error"] = f"runner.json unreadable: {exc}"
        return entry
    entry["pid"] = state.get("pid")
    entry["running"] = same_process(state.get("pid"), state.get("process_start"))
    for key in ("state", "state_reason", "updated_at"):
        entry[key] = state.get(key)
    for role in ("active", "standby"):
        instance = state.get(role)
        if isinstance(instance, dict):
            entry[role] = {
                "pid": instance.get("pid"),
                "version": instance.get("version"),
                "epoch": instance.get("epoch"),
                "started_at": instance.get("started_at"),
                "trading_since": instance.get("trading_since"),
                "alive": same_process(instance.get("pid"), instance.get("process_start")),
            }
        else:
            entry[role] = None
    for key in ("previous_version", "restarts", "last_exit"):
        entry[key] = state.get(key)
    reloads = state.get("reloads")
    entry["reloads"] = [r for r in reloads if isinstance(r, dict)][-RELOADS_KEPT:] if isinstance(reloads, list) else []
    return entry


def _probe_trading(control_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"control_dir": str(control_dir)}
    try:
        status = read_trading_status(control_dir)
        entry.update({key: status.get(key) for key in _TRADING_FIELDS if key in status})
        if isinstance(status.get("last_cycle_at"), int | float):
            entry["last_cycle_age_seconds"] = round(max(0.0, time.time() - float(status["last_cycle_at"])), 3)
    except FileNotFoundError:
        entry["error"] = "no status.json: the bot's Control has not started"
    except (OSError, ValueError) as exc:
        entry["error"] = f"status.json unreadable: {exc}"
    try:
        # Always the control dir's own log: a path the bot's status names could be anything.
        entry["decisions"] = decision_tail(control_dir / DECISION_LOG_FILE, lines=DECISIONS_KEPT)
    except OSError as exc:
        entry["decisions_error"] = str(exc)
    return entry


def _probe_heartbeat(options: HeartbeatOptions) -> dict[str, Any]:
    if options.path is None:
        return {"listen": options.listen, "skipped": "beats arrive as datagrams; the check holds the latest"}
    entry: dict[str, Any] = {"path": str(options.path)}
    try:
        beat = read_json(options.path, FORMAT_HEARTBEAT)
    except FileNotFoundError:
        entry["error"] = "does not exist"
        return entry
    except (OSError, ValueError) as exc:
        entry["error"] = f"unreadable: {exc}"
        return entry
    same_boot = beat.get("boot_id") is not None and beat.get("boot_id") == boot_id()
    now_mono, now_wall = time.monotonic(), time.time()

    def age_of(item: dict[str, Any]) -> float | None:
        # The same rule as the check: the shared monotonic clock when on the same boot, else wall time.
        if same_boot and isinstance(item.get("monotonic"), int | float):
            return round(max(0.0, now_mono - float(item["monotonic"])), 3)
        if isinstance(item.get("wall_time"), int | float):
            return round(max(0.0, now_wall - float(item["wall_time"])), 3)
        return None

    entry.update(pid=beat.get("pid"), sequence=beat.get("sequence"), age_seconds=age_of(beat))
    channels: dict[str, Any] = beat["channels"] if isinstance(beat.get("channels"), dict) else {}
    entry["channels"] = {
        str(name): {"age_seconds": age_of(item), "count": item.get("count")}
        for name, item in channels.items()
        if isinstance(item, dict)
    }
    return entry


def _probe_crash(evidence: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        key: evidence[key] for key in ("crash_record", "crash_summary") if evidence.get(key) is not None
    }
    path = evidence.get("crash_record")
    if not path:
        return entry
    try:
        record = _read_crash_record(Path(path))
    except (OSError, ValueError) as exc:
        entry["error"] = f"unreadable: {exc}"
        return entry
    return _describe_crash(entry, record)


def _newest_in_crash_dirs(crash_dirs: list[Path], owner: int | None) -> dict[str, Any] | None:
    """The newest crash record in the monitor's crash_dir(s) that this service wrote, or None.

    "This service" is checked, not assumed: a crash_dir may be shared (``/tmp``), so a record counts only
    when it is a regular file named for the pid it holds, owned by ``owner`` (see _crash_record_owner).
    The record may predate the failure: ``"source": "crash_dir"`` says so.
    """
    candidates: list[tuple[float, Path]] = []
    for crash_dir in crash_dirs:
        try:
            with os.scandir(crash_dir) as entries:
                for count, item in enumerate(entries):
                    if count >= MAX_CRASH_DIR_ENTRIES:
                        break  # a directory another process fills must not make the snapshot late
                    pid = _crash_record_pid(item.name)
                    if pid is None or not item.is_file(follow_symlinks=False):
                        continue
                    st = item.stat(follow_symlinks=False)
                    if owner is None or st.st_uid == owner:
                        candidates.append((st.st_mtime, Path(item.path)))
        except OSError:
            continue
    # Newest first; one that turns out unreadable or not this service's gives way to the next.
    for _mtime, path in sorted(candidates, reverse=True)[:CRASH_RECORDS_TRIED]:
        try:
            record = _read_crash_record(path, follow=False)
        except (OSError, ValueError):
            continue
        if record.get("pid") != _crash_record_pid(path.name):
            continue
        entry = {"crash_record": str(path), "source": "crash_dir", "records_in_dir": len(candidates)}
        return _describe_crash(entry, record)
    return None


def _crash_record_owner(
    crash_dirs: list[Path], beats: list[HeartbeatOptions], evidence: EvidenceOptions | None
) -> int | None:
    """Whose crash records are the service's: the evidence block's ``user`` when it names one, else
    whoever owns the service's heartbeat file, else the first crash_dir; None when none can be seen."""
    if evidence is not None and evidence.user is not None:
        with contextlib.suppress(LookupError):  # a user deleted since the config was read
            return uid_of(evidence.user)
    for path in [o.path for o in beats if o.path is not None] + crash_dirs:
        try:
            return os.stat(path).st_uid
        except OSError:
            continue
    return None


_CRASH_RECORD_NAME = re.compile(r"^horus-crash-(\d{1,10})\.json$")


def _crash_record_pid(name: str) -> int | None:
    match = _CRASH_RECORD_NAME.match(name)
    return int(match.group(1)) if match else None


def _read_crash_record(path: Path, *, follow: bool = True) -> dict[str, Any]:
    """A crash record: a regular file, read without blocking on a pipe and bounded; with ``follow=False``
    a symbolic link is refused too (for records found by listing a directory that others may write)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if st.st_size > CRASH_RECORD_MAX_BYTES:
            raise ValueError(f"{path}: {st.st_size} bytes, more than a crash record's {CRASH_RECORD_MAX_BYTES}")
        data = f.read(CRASH_RECORD_MAX_BYTES + 1)
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT_CRASH:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path}: not a {FORMAT_CRASH} file (format {found!r})")
    return record


def _describe_crash(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    entry.setdefault("crash_summary", crash_summary(record))
    for key in ("pid", "wall_time", "kind", "reason", "channel", "stalled_seconds"):
        if record.get(key) is not None:
            entry[key] = record[key]
    stuck = record.get("stuck")
    entry["stuck"] = _redacted_frame(stuck) if isinstance(stuck, dict) else None
    operations = record.get("operations")
    entry["operations"] = [op for op in operations if isinstance(op, dict)][:20] if isinstance(operations, list) else []
    return entry


def _redacted_frame(frame: dict[str, Any]) -> dict[str, Any]:
    # A frame's source line may hold a literal secret (``client = Client(api_key="...")``).
    return {**frame, "code": redact_line(str(frame["code"]))} if frame.get("code") else dict(frame)


# --- the size bound ------------------------------------------------------------------------------------


def _size(snapshot: dict[str, Any]) -> int:
    return len(json.dumps(snapshot, default=str).encode("utf-8"))


def _fit(snapshot: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Trim ``snapshot`` in place until ``json.dumps`` of it fits ``max_bytes``: log baselines first (the
    rarest lines go), then log tails (oldest lines go), then py-spy output, then the least telling details;
    a skeleton if even that is too big."""
    size = _size(snapshot)
    if size <= max_bytes:
        return snapshot
    snapshot["truncated"] = True
    for trim in (_trim_log_baselines, _trim_since_healthy, _trim_log_tails, _trim_py_spy, _trim_details):
        size = _size(snapshot)
        while size > max_bytes and trim(snapshot, size - max_bytes):
            size = _size(snapshot)
        if size <= max_bytes:
            return snapshot
    skeleton: dict[str, Any] = {
        key: snapshot[key] for key in ("format", "monitor", "taken_at", "elapsed_ms") if key in snapshot
    }
    skeleton.update(truncated=True, error=f"the snapshot did not fit in {max_bytes} bytes")
    return skeleton


def log_tail(snapshot: Mapping[str, Any]) -> list[str]:
    """Every log's last lines in a snapshot (already redacted), in the order of its logs."""
    lines: list[str] = []
    for entry in snapshot.get("logs") or []:
        if isinstance(entry, dict):
            lines.extend(str(line) for line in entry.get("tail") or [])
    return lines


def _trim_log_baselines(snapshot: dict[str, Any], excess: int) -> bool:
    # What the service said while it was healthy only weighs what it said at the end, so it goes first.
    baselines = [
        entry["baseline"] for entry in snapshot.get("logs") or [] if isinstance(entry, dict) and entry.get("baseline")
    ]
    if not baselines:
        return False
    longest = max(baselines, key=lambda baseline: len(json.dumps(baseline)))
    entry_size = max(1, len(json.dumps(longest)) // len(longest))
    del longest[-max(1, min(len(longest), -(-excess // entry_size))) :]
    return True


def _trim_since_healthy(snapshot: dict[str, Any], excess: int) -> bool:
    # The newest of these go first: the oldest is the line that began the failure.
    kept = [e["since_healthy"] for e in snapshot.get("logs") or [] if isinstance(e, dict) and e.get("since_healthy")]
    if not kept:
        return False
    longest = max(kept, key=len)
    line_size = max(1, sum(len(json.dumps(line)) + 2 for line in longest) // len(longest))
    del longest[-max(1, min(len(longest), -(-excess // line_size))) :]
    return True


def _trim_log_tails(snapshot: dict[str, Any], excess: int) -> bool:
    tails = [entry["tail"] for entry in snapshot.get("logs") or [] if isinstance(entry, dict) and entry.get("tail")]
    if not tails:
        return False
    longest = max(tails, key=len)
    line_size = max(1, sum(len(json.dumps(line)) + 2 for line in longest) // len(longest))
    del longest[: max(1, min(len(longest), -(-excess // line_size)))]
    return True


def _trim_py_spy(snapshot: dict[str, Any], excess: int) -> bool:
    dumps = [d for d in (snapshot.get("py_spy") or {}).get("dumps") or [] if d.get("output")]
    if not dumps:
        return False
    biggest = max(dumps, key=lambda d: len(d["output"]))
    marker = "\n… (truncated)"
    output: str = biggest["output"].removesuffix(marker)
    keep = len(output) - excess - 32  # room for the marker, escaped
    # The start is kept: py-spy lists the process, then its main thread first.
    biggest["output"] = output[:keep] + marker if keep > 0 else ""
    return True


def _trim_details(snapshot: dict[str, Any], excess: int) -> bool:
    for section in snapshot.get("processes") or []:
        matches = section.get("matches") or []
        if len(matches) > 1:
            del matches[1:]
            return True
        for match in matches:
            if len(match.get("cmdline") or "") > 200:
                match["cmdline"] = _clip(match["cmdline"], 200)
                return True
    for entry in snapshot.get("http") or []:
        if entry.pop("body_head", None):
            return True
    crash = snapshot.get("crash")
    if isinstance(crash, dict) and (crash.get("operations") or (crash.get("stuck") or {}).get("code")):
        crash["operations"] = []
        if crash.get("stuck"):
            crash["stuck"].pop("code", None)
        return True
    for key in ("logs", "disk", "heartbeats", "http", "ports", "processes"):
        items = snapshot.get(key)
        if isinstance(items, list) and len(items) > 1:
            del items[1:]
            return True
    return False


# --- for people ----------------------------------------------------------------------------------------


def describe_process_state(snapshot: Mapping[str, Any]) -> str:
    """One line for a post-mortem's "Process state at detection":
    ``Running (pid 4121, 2 h old, 0.0% CPU, 85 MB), port 8080 bound, HTTP 200 in 12 ms`` or ``Not running``."""
    parts: list[str] = []
    sections = [s for s in snapshot.get("processes") or [] if isinstance(s, dict)]
    if sections:
        parts.append(_describe_processes(sections))
    for port in snapshot.get("ports") or []:
        where = (
            f"port {port.get('port')}" if port.get("host") in _LOOPBACK else f"{port.get('host')}:{port.get('port')}"
        )
        if "accepting" not in port:
            parts.append(f"{where} not probed ({port.get('error', 'unknown')})")
        else:
            parts.append(f"{where} bound" if port["accepting"] else f"{where} {port.get('detail', 'not accepting')}")
    for answer in snapshot.get("http") or []:
        if answer.get("status") is not None:
            parts.append(f"HTTP {answer['status']} in {humanize.seconds(float(answer.get('latency_ms', 0)) / 1000)}")
        else:
            parts.append(f"HTTP no answer ({answer.get('error', 'unknown')})")
    for beat in snapshot.get("heartbeats") or []:
        if beat.get("age_seconds") is not None:
            parts.append(f"heartbeat {humanize.duration(float(beat['age_seconds']))} old")
    if not parts:
        for log in snapshot.get("logs") or []:
            if log.get("age_seconds") is not None:
                parts.append(
                    f"log {Path(log['path']).name} last written {humanize.duration(float(log['age_seconds']))} ago"
                )
    if not parts:
        return "Not observed (no process, port or HTTP probe applies to this monitor)"
    text = ", ".join(parts)
    return text[:1].upper() + text[1:]


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _describe_processes(sections: list[dict[str, Any]]) -> str:
    errors = [s["error"] for s in sections if s.get("error")]
    matches = [m for s in sections for m in s.get("matches") or [] if not m.get("error")]
    if not matches:
        return f"process state unknown ({errors[0]})" if errors else "not running"
    first = matches[0]
    facts = [f"pid {first['pid']}"]
    if first.get("age_seconds") is not None:
        facts.append(f"{humanize.duration(float(first['age_seconds']))} old")
    if first.get("cpu_percent") is not None:
        facts.append(f"{float(first['cpu_percent']):.1f}% CPU")
    if first.get("rss_bytes") is not None:
        facts.append(f"{int(first['rss_bytes']) / (1024 * 1024):.0f} MB")
    total = sum(int(s.get("count") or 0) for s in sections)
    more = f" and {total - 1} more" if total > 1 else ""
    return f"running ({', '.join(facts)}){more}"
