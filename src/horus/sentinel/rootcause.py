"""Probable root causes of an incident, from the evidence Horus holds: deterministic rules, no guessing.

:func:`analyse` runs every rule in :data:`RULES` over one :class:`Evidence` (the snapshot taken at
detection, the crash record, the log tail, the check's reason, the declared upstreams' status, the
commits and config changes since the service was last healthy) and returns what matched, most
confident first. Every hypothesis quotes what supports it (the exact log line, redacted; the crash
record's frame; an upstream's status; a commit) and says what would prevent it. A hypothesis is never
a verdict: titles say ``probable:`` (confidence 0.5 and above) or ``possible:``.

A rule is one small function ``(evidence, found) -> Hypothesis | None``, registered in :data:`RULES`;
``found`` holds the hypotheses of the rules before it, so a general rule (an unhandled traceback) can
stay quiet when a specific one already explained the same line. A rule that breaks is logged
(``rootcause.rule_failed``) and skipped: one bad rule must not cost the post-mortem.

What the service said about itself outranks every guess from outside: its crash record, and the lines
horus-sdk wrote to its log (LoopWatchdog's ``watchdog.loop_blocked`` warning, written while the loop is
blocked and before the watchdog ends the process, so often before Horus heals; ``watchdog.stalled`` as
it ends it; BlockingDetector's ``blocking.detected``). When they name a frame, the py-spy and "hung"
guesses stay quiet, and the advice is about that call, never "add LoopWatchdog"; a service that shows
any sign of running the SDK (a crash record, its log lines, a heartbeat) is never told to add it.

Confidences: event loop blocked or stalled at a frame, by the crash record or the watchdog's warning in
the log, 0.9 (the watchdog's line as it ended the process 0.85; the newest record in crash_dir, written
before this failure, 0.8 unless the watchdog's warning now names the same frame; BlockingDetector's
report 0.8; a crash record without a frame 0.6, 0.5 when older); disk full 0.9; out of memory 0.85 (a
SIGKILL or exit 137 alone 0.6); address in use 0.85; import or config error after a change 0.85;
connection refused by a failing upstream 0.85 (upstream failing alone 0.7, refused alone 0.6); rate
limited 0.8; stuck in a frame seen by py-spy 0.75; upstream timeout 0.7; idle event loop (py-spy) 0.65;
hung with the process running 0.45 (busy loop 0.5); unhandled traceback 0.5 (its end cut off 0.4);
recent change 0.3 (0.2 beside other signals); unknown 0.1.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from horus import humanize
from horus.log import get_logger
from horus.sentinel.changes import Commit
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.snapshot import describe_process_state, redact_line
from horus.sentinel.snapshot import log_tail as snapshot_log_tail

__all__ = ["RULES", "UNKNOWN_TITLE", "Evidence", "Rule", "analyse", "summarise"]

log = get_logger(__name__)

UNKNOWN_TITLE = "unknown: no known failure signature in the evidence"
QUOTE_LIMIT = 300
COMMITS_CITED = 3
SUMMARY_LIMIT = 4000
# An upstream whose status text starts with one of these is not failing.
_NOT_FAILING = ("healthy", "ok", "up", "running", "recovered", "unknown", "pending", "disabled", "not checked")


@dataclass(frozen=True)
class Evidence:
    """Everything the rules may look at, read-only. ``lines`` is the log tail, redacted, oldest first."""

    snapshot: Mapping[str, Any]
    crash: Mapping[str, Any] | None
    lines: tuple[str, ...]
    reason: str
    check_type: str
    upstreams: Mapping[str, str]
    commits: tuple[Commit, ...]
    config_changed: bool
    last_healthy_at: float | None

    def last(self, pattern: re.Pattern[str]) -> str | None:
        """The newest log line matching ``pattern``."""
        for line in reversed(self.lines):
            if pattern.search(line):
                return line
        return None

    def count(self, pattern: re.Pattern[str]) -> int:
        return sum(1 for line in self.lines if pattern.search(line))

    def failing_upstreams(self) -> dict[str, str]:
        return {
            name: status
            for name, status in sorted(self.upstreams.items())
            if not status.strip().lower().startswith(_NOT_FAILING)
        }

    def changes(self) -> list[Commit]:
        """Commits made since the service was last healthy (all of them when that time is unknown)."""
        since = self.last_healthy_at
        return [c for c in self.commits if since is None or c.at >= since]

    def http_statuses(self) -> list[tuple[str, int]]:
        return [
            (str(entry.get("url")), int(entry["status"]))
            for entry in self.snapshot.get("http") or []
            if isinstance(entry, dict) and isinstance(entry.get("status"), int)
        ]

    def sdk_said(self) -> list[_Said]:
        """What horus-sdk's own log lines in the tail say about where the loop was stuck, oldest first."""
        return [said for line in self.lines if (said := _parse_sdk_line(line)) is not None]

    def sdk_says_now(self) -> list[_Said]:
        """The watchdog's warnings about a process it has not ended (since its last ``watchdog.stalled``):
        the lines that speak of this failure rather than of an earlier instance's."""
        said = self.sdk_said()
        ended = max((i for i, s in enumerate(said) if s.ending), default=-1)
        return [s for s in said[ended + 1 :] if s.kind != "blocked_briefly"]

    def runs_the_sdk(self) -> bool:
        """Whether the service shows signs of running horus-sdk: a crash record, the SDK's own log lines,
        or an SDK heartbeat file. Such a service is never told to add the SDK or its LoopWatchdog."""
        if self.crash or self.check_type == "heartbeat" or any(_SDK_EVENT.search(line) for line in self.lines):
            return True  # the heartbeat check reads nothing but the SDK's beats
        return any(
            isinstance(beat, dict) and not beat.get("error") and (beat.get("channels") or beat.get("pid") is not None)
            for beat in self.snapshot.get("heartbeats") or []
        )

    def crash_predates_failure(self) -> str | None:
        """When the crash record was written before this failure began, how long ago (else None).

        A record the snapshot found in the crash_dir itself (``source: crash_dir``) is older than the
        engine's window, and one older than the last healthy moment belongs to an earlier failure.
        """
        crash = self.crash or {}
        written = crash.get("wall_time")
        written = float(written) if isinstance(written, int | float) else None
        older = crash.get("source") == "crash_dir" or (
            written is not None and self.last_healthy_at is not None and written < self.last_healthy_at
        )
        if not older:
            return None
        taken = self.snapshot.get("taken_at")
        if written is None or not isinstance(taken, int | float):
            return "some time"
        return humanize.duration(max(0.0, float(taken) - written))


Rule = Callable[[Evidence, Sequence[Hypothesis]], Hypothesis | None]


def _probable(text: str, confidence: float, evidence: list[str], recommendation: str | None) -> Hypothesis:
    label = "probable" if confidence >= 0.5 else "possible"
    return Hypothesis(f"{label}: {text}", confidence, evidence, recommendation)


def _log(line: str) -> str:
    return f"log: {_clip(line)}"


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def _cite_commit(commit: Commit, last_healthy_at: float | None) -> str:
    when = ""
    if last_healthy_at is not None:
        when = f", {humanize.duration(max(0.0, commit.at - last_healthy_at))} after last healthy"
    return f'commit {commit.short_sha} "{commit.subject}" by {commit.author}{when}'


def _cites_a_change(found: Sequence[Hypothesis]) -> bool:
    return any(e.startswith(("commit ", "config:")) for h in found for e in h.evidence)


def _already_cited(line: str, found: Sequence[Hypothesis]) -> bool:
    quoted = _log(line)
    return any(quoted in h.evidence for h in found)


# --- what horus-sdk writes to the service's log -----------------------------------------------------------

# The SDK's own words (logger ``horus_sdk``), whatever the service's log format puts around them.
_REPR = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_SDK_FRAME = r"at=(?P<file>\S.*?):(?P<line>\d+) function=(?P<function>[\w.<>-]+)(?: code=(?P<code>" + _REPR + "))?"
# LoopWatchdog at warn_after of a blocked loop, while it is still blocked (watchdog._warn_blocked).
_WATCHDOG_BLOCKED = re.compile(
    r"\bwatchdog\.loop_blocked seconds=(?P<seconds>[\d.]+) (?:" + _SDK_FRAME + r"|at=unknown)"
)
# LoopWatchdog ending the process (or failing to write its record): the record's crash_summary.
_WATCHDOG_ENDING = re.compile(
    r"\bwatchdog\.(?:stalled action=\w+ record=\S+|record_failed path=\S+ error=.*?) reason=(?P<reason>[^;\"]+)"
    r"(?:; stuck in (?P<function>[\w.<>-]+) at (?P<file>[^;\"]+?):(?P<line>\d+))?"
)
# BlockingDetector's default report, after a stall ended (blocking._log_report), and a BlockingReport as text.
_BLOCKING_DETECTED = re.compile(r"\bblocking\.detected seconds=(?P<seconds>[\d.]+) " + _SDK_FRAME)
_BLOCKING_REPORT = re.compile(
    r"\bevent loop blocked for (?P<seconds>[\d.]+) s at (?P<file>\S.*?):(?P<line>\d+) in (?P<function>[\w.<>-]+)"
    r"(?:: (?P<code>.+))?"
)
_CHANNEL = re.compile(r"channel '(?P<channel>[^']+)' made no progress")
# Any of the SDK's own events: its watchdog or BlockingDetector is running in the service. (Not the bare
# word horus_sdk: "No module named 'horus_sdk'" says the opposite.)
_SDK_EVENT = re.compile(
    r"\bwatchdog\.(?:loop_blocked|stalled|record_failed|crash_dir_missing|not_started|check_failed|hook_failed"
    r"|on_kill_timeout|prune_failed|backstop_failed)\b|\bblocking\.(?:detected|watcher_not_started|on_report_failed)\b"
)


@dataclass(frozen=True)
class _Said:
    """What one of horus-sdk's own log lines says: where the loop was stuck, and how sure that is.

    ``kind``: ``loop_blocked`` (LoopWatchdog, the loop is blocked now), ``channel_stalled`` (an await that
    never returned), ``blocked_briefly`` (BlockingDetector: a stall that ended)."""

    line: str
    kind: str
    ending: bool = False  # the watchdog ending the process: said of a process that is gone now
    function: str | None = None
    file: str | None = None
    lineno: str | None = None
    code: str | None = None
    seconds: str | None = None
    channel: str | None = None

    @property
    def where(self) -> str | None:
        if not self.function:
            return None
        return f"{self.function} at {os.path.basename(self.file or '?')}:{self.lineno or '?'}"


def _parse_sdk_line(line: str) -> _Said | None:
    if match := _WATCHDOG_ENDING.search(line):
        reason = match["reason"].strip()
        channel = _CHANNEL.search(reason)
        kind = "channel_stalled" if channel else "loop_blocked"
        return _Said(
            line,
            kind,
            True,
            match["function"],
            match["file"],
            match["line"],
            channel=channel["channel"] if channel else None,
        )
    for pattern, kind in ((_WATCHDOG_BLOCKED, "loop_blocked"), (_BLOCKING_DETECTED, "blocked_briefly")):
        if match := pattern.search(line):
            code = _unquote(match["code"]) if match["code"] else None
            return _Said(line, kind, False, match["function"], match["file"], match["line"], code, match["seconds"])
    if match := _BLOCKING_REPORT.search(line):
        code = match["code"].strip() if match["code"] else None
        return _Said(
            line, "blocked_briefly", False, match["function"], match["file"], match["line"], code, match["seconds"]
        )
    return None


def _unquote(text: str) -> str:
    # The SDK writes the source line as repr(); a line cut off by redaction or the log format stays as is.
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")
    return value if isinstance(value, str) else text


def _said_by_the_service(found: Sequence[Hypothesis]) -> bool:
    """Whether a hypothesis already rests on what the service said: its crash record or the SDK's lines."""
    return any(
        e.startswith("crash record") or (e.startswith("log: ") and _parse_sdk_line(e) is not None)
        for h in found
        for e in h.evidence
    )


def _unblock(function: str, where: str, code: str | None) -> str:
    """Advice for a call that blocks the event loop: the call itself, never "add a watchdog"."""
    call = f" ({_clip(code)})" if code else ""
    return (
        f"{where} blocks the event loop with a synchronous call{call}: run it off the loop "
        f"(await asyncio.to_thread(...)) or use an asynchronous client, and give it a timeout (the client's own, "
        f'and horus_sdk.deadline("{function}", ...) around the await) so that an upstream that never answers '
        "becomes an error the service retries, not a frozen loop."
    )


def _await_deadline(where: str, operation: str) -> str:
    return (
        f"An await in {where} never returned: put a deadline on {operation} (asyncio.wait_for or "
        "horus_sdk.deadline) so that a call that hangs becomes an error the service can retry."
    )


# --- the rules, most specific first ---------------------------------------------------------------------


def event_loop_stuck(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """The SDK's watchdog recorded where the service was stuck (``kind`` loop_blocked or channel_stalled).

    The record outranks every guess, even one written before this failure (the newest in its crash_dir:
    an earlier hang, often at the same line, while this one was healed before the watchdog acted); that
    one is said to be older, and ranks below the SDK's own lines about the failure now."""
    crash = ev.crash
    if not crash:
        return None
    older = ev.crash_predates_failure()
    reason = str(crash.get("reason") or crash.get("crash_summary") or "ended by its watchdog")
    evidence = [f"crash record: {_clip(reason)}"]
    operations = [op for op in crash.get("operations") or [] if isinstance(op, dict) and op.get("name")]
    if operations:
        flight = ", ".join(f"{op['name']} ({float(op.get('age_seconds', 0)):.0f} s)" for op in operations[:3])
        evidence.append(f"crash record: in flight: {flight}")
    if older is not None:
        path = str(crash.get("crash_record") or "")
        newest = (
            f"the newest of {crash['records_in_dir']} in {os.path.dirname(path)}"
            if crash.get("records_in_dir")
            else "the newest"
        )
        evidence.append(f"crash record: {newest}, written {older} ago, before this failure (none since it began)")
    since = f" (its newest crash record, written {older} ago, before this failure)" if older is not None else ""
    stuck = crash.get("stuck") if isinstance(crash.get("stuck"), dict) else None
    if not stuck or not stuck.get("function"):
        return _probable(
            f"ended by its own watchdog ({_clip(reason)}){since}",
            0.5 if older is not None else 0.6,
            evidence,
            "Put a deadline on every external call (asyncio.wait_for or horus_sdk.deadline) so that the next "
            "crash record names the operation that hung.",
        )
    function = str(stuck["function"])
    where = f"{function} at {os.path.basename(str(stuck.get('file', '?')))}:{stuck.get('line', '?')}"
    frame = f"crash record: stuck in {where}"
    code = redact_line(str(stuck["code"])) if stuck.get("code") else None
    if code:
        frame += f": {_clip(code)}"
    evidence.insert(1, frame)
    # The service's own log saying the same is the same fact seen twice: quote it here, not as a rival.
    # Its watchdog saying so now makes even an older record the account of this failure.
    agreeing = [said for said in ev.sdk_said() if said.where == where]
    if agreeing:
        evidence.append(_log(agreeing[-1].line))
        if any(said.where == where for said in ev.sdk_says_now()):
            older = None
            since = ""
    confidence = 0.8 if older is not None else 0.9
    if crash.get("kind") == "loop_blocked":
        return _probable(f"event loop blocked in {where}{since}", confidence, evidence, _unblock(function, where, code))
    operation = str(operations[0]["name"]) if operations else function
    channel = f" (channel {crash['channel']!r} made no progress)" if crash.get("channel") else ""
    return _probable(f"stuck in {where}{channel}{since}", confidence, evidence, _await_deadline(where, operation))


def blocked_in_its_log(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """horus-sdk's own lines in the service's log say where its loop was blocked: LoopWatchdog's warning
    (``watchdog.loop_blocked``, written while the loop is still blocked, before it ends the process),
    its ``watchdog.stalled`` as it ends it, or BlockingDetector's ``blocking.detected`` after a stall."""
    said = ev.sdk_said()
    if not said:
        return None
    # The watchdog's lines say the loop is stuck now; BlockingDetector's that it was, for a while.
    newest = next((s for s in reversed(said) if s.kind != "blocked_briefly"), said[-1])
    where = newest.where
    if _already_cited(newest.line, found) or (where and any(where in h.title for h in found)):
        return None  # the crash record says the same
    evidence = [_log(newest.line)]
    if where is None and newest.kind == "channel_stalled":
        return _probable(
            f"an await that never returned (channel {newest.channel!r} made no progress, said its own watchdog)",
            0.8,
            evidence,
            f"Put a deadline on every await in the {newest.channel} channel's path (horus_sdk.deadline), so that "
            "a call that hangs becomes an error and the next crash record names the operation in flight.",
        )
    if where is None:
        seconds = f" for {newest.seconds} s" if newest.seconds else ""
        return _probable(
            f"event loop blocked{seconds}, said its own watchdog (it saw no frame of the service's code)",
            0.8,
            evidence,
            "A synchronous call or a long computation blocks the event loop: horus-sdk's BlockingDetector names "
            "the line; run that call off the loop (asyncio.to_thread) and give it a timeout.",
        )
    same = sum(1 for s in said if s.where == where)
    if same > 1:
        evidence.append(f"log: {same} of the last {len(ev.lines)} lines say so")
    function = str(newest.function)
    # A warning speaks of the process now; a line ending a process may be about an earlier instance.
    ended, confidence = (" (its watchdog ended it)", 0.85) if newest.ending else ("", 0.9)
    if newest.kind == "channel_stalled":
        channel = f" (channel {newest.channel!r} made no progress)" if newest.channel else ""
        return _probable(f"stuck in {where}{channel}{ended}", confidence, evidence, _await_deadline(where, function))
    if newest.kind == "blocked_briefly":
        seconds = f" for {newest.seconds} s" if newest.seconds else ""
        return _probable(
            f"event loop blocked{seconds} in {where}", 0.8, evidence, _unblock(function, where, newest.code)
        )
    return _probable(
        f"event loop blocked in {where}{ended}", confidence, evidence, _unblock(function, where, newest.code)
    )


_DISK_FULL = re.compile(r"(?i)\bENOSPC\b|no space left on device|disk quota exceeded|\bEDQUOT\b")


def disk_full(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.last(_DISK_FULL)
    if line is None:
        return None
    return _probable(
        "disk full (no space left on device)",
        0.9,
        [_log(line)],
        "Free space on the volume; rotate and cap logs and other output (logrotate, RotatingFileHandler), and "
        "watch disk usage so that it is noticed before it is full.",
    )


_OUT_OF_MEMORY = re.compile(
    r"(?i)\bMemoryError\b|\bout of memory\b|\bOOM\b|oom[-_ ]kill|killed process \d+|cannot allocate memory|\bENOMEM\b"
)
_KILLED_LINE = re.compile(r"^\s*Killed\s*$|\bKilled\b.*\bsignal 9\b")
_SIGKILL = re.compile(r"(?i)\bSIGKILL\b|\bsignal 9\b|exit(?:ed)?(?: with)?(?: status| code)?:? ?(?:-9|137)\b")


def out_of_memory(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.last(_OUT_OF_MEMORY) or ev.last(_KILLED_LINE)
    recommendation = (
        "Find what grows (tracemalloc, RSS over time) and bound it (caches, queues, buffered responses); raise "
        "the memory limit only once the growth is understood."
    )
    if line is not None:
        return _probable("out of memory (killed or MemoryError)", 0.85, [_log(line)], recommendation)
    killed = _SIGKILL.search(ev.reason)
    if killed is None:
        line = ev.last(_SIGKILL)
        if line is None:
            return None
        return _probable("killed by SIGKILL, often the kernel's OOM killer", 0.6, [_log(line)], recommendation)
    return _probable(
        "killed by SIGKILL, often the kernel's OOM killer",
        0.6,
        [f"check: {_clip(ev.reason)}"],
        recommendation + " Look for 'Out of memory: Killed process' in the kernel log (dmesg, journalctl -k).",
    )


_ADDRESS_IN_USE = re.compile(r"(?i)\bEADDRINUSE\b|address already in use|\[Errno (?:98|48)\]")
# "port 8080", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "('0.0.0.0', 8080)"; never a time "02:23:01".
_PORT_IN_LINE = re.compile(
    r"\bport\s+(\d{2,5})\b|(?:[A-Za-z][\w.-]*|\d+\.\d+\.\d+\.\d+|\])\s*:(\d{2,5})\b|',\s*(\d{2,5})\)"
)


def address_in_use(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.last(_ADDRESS_IN_USE)
    if line is None:
        return None
    port = _PORT_IN_LINE.search(line)
    where = f"port {next(group for group in port.groups() if group)}" if port else "its port"
    return _probable(
        f"address in use: another process holds {where}",
        0.85,
        [_log(line)],
        f"Find the holder of {where} (lsof -i, ss -ltnp): often the previous instance still shutting down. Let "
        "the supervisor wait for the old process to exit before starting a new one, or set SO_REUSEADDR.",
    )


_CHANGE_ERROR = re.compile(
    r"\b(?:ModuleNotFoundError|ImportError|SyntaxError|IndentationError|\w*Config(?:uration)?Error)\b"
    r"|\bKeyError: '[A-Z][A-Z0-9_]{2,}'"  # a missing environment variable: os.environ["API_KEY"]
    r"|(?i:\b(?:invalid|missing|bad|malformed)\s+(?:config(?:uration)?|setting|environment variable)\b)"
    r"|(?i:\bconfig(?:uration)?(?:\s+file)?\s+(?:error|is invalid|not found|is missing)\b)"
)


def import_or_config_error_after_change(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.last(_CHANGE_ERROR)
    changes = ev.changes()
    if line is None or not (changes or ev.config_changed):
        return None
    evidence = [_log(line)]
    evidence += [_cite_commit(c, ev.last_healthy_at) for c in changes[:COMMITS_CITED]]
    if ev.config_changed:
        evidence.append("config: the config file changed since the service was last healthy")
    if changes:
        newest = changes[0]
        culprit = f'commit {newest.short_sha} "{newest.subject}"'
        recommendation = (
            f"Fix or revert {culprit}; run an import and config smoke test (python -c 'import main', a config "
            "validation) before every deploy so this fails in CI, not in production."
        )
    else:
        culprit = "a config change"
        recommendation = "Check the config change against what the service expects, and validate it before reloading."
    return _probable(f"import or config error after {culprit}", 0.85, evidence, recommendation)


_REFUSED = re.compile(r"(?i)\bECONNREFUSED\b|connection refused|ConnectionRefusedError|connect call failed")
_TARGET = re.compile(r"(?i)(?:host\s+|to\s+|\(')([\w.-]+)(?::|',\s*)(\d{2,5})")


def dependency_refused(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """Connections refused, and/or a declared upstream failing now: this service is probably a symptom."""
    line = ev.last(_REFUSED)
    failing = ev.failing_upstreams()
    if line is None and not failing:
        return None
    evidence = [f"upstream {name}: {_clip(status)}" for name, status in failing.items()]
    if line is not None:
        evidence.insert(0, _log(line))
    if failing:
        names = ", ".join(failing)
        text = f"connection refused by declared dependency {names}" if line else f"declared dependency {names} failing"
        return _probable(
            text,
            0.85 if line else 0.7,
            evidence,
            f"Heal {names} first: this service fails because it does. Make the service retry its connections "
            "with exponential backoff and jitter, and report the dependency as down rather than hanging on it.",
        )
    target = _TARGET.search(line or "")
    whom = f"{target.group(1)}:{target.group(2)}" if target else "an upstream"
    return _probable(
        f"connection refused by {whom}",
        0.6,
        evidence,
        f"Check that {whom} is running and listening; declare it in depends_on (and watch it) so that Horus heals "
        "it rather than this service. Retry connections with exponential backoff and jitter.",
    )


_RATE_LIMIT = re.compile(
    r"(?i)\b(?:http(?:/\d(?:\.\d)?)?|status(?:[_ ]code)?|code|response)\W{0,3}429\b"
    r"|\b429\s+too many requests|too many requests"
    # "rate limit exceeded", "rate-limited"; not a setting such as "rate_limit_per_second=10"
    r"|\brate[ -]?limit(?:ed|ing|\s+(?:exceeded|reached|hit))\b|\bthrottl(?:ed|ing)\b"
)


def rate_limited(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.last(_RATE_LIMIT)
    evidence = []
    if line is not None:
        count = ev.count(_RATE_LIMIT)
        evidence.append(_log(line))
        if count > 1:
            evidence.append(f"log: {count} of the last {len(ev.lines)} lines say so")
    if _RATE_LIMIT.search(ev.reason):
        evidence.append(f"check: {_clip(ev.reason)}")
    evidence += [f"snapshot: HTTP 429 from {url}" for url, status in ev.http_statuses() if status == 429]
    if not evidence:
        return None
    return _probable(
        "rate limited by an upstream (HTTP 429 / too many requests)",
        0.8,
        evidence,
        "Add explicit rate-limit detection (HTTP 429, Retry-After) and exponential backoff with jitter; log a "
        "heartbeat every 60 s regardless of work state, so that waiting out a limit is not mistaken for a hang.",
    )


_TIMEOUT = re.compile(
    r"\b(?:ReadTimeout|ConnectTimeout|ReadTimeoutError|ConnectTimeoutError|ServerTimeoutError|TimeoutError"
    r"|DeadlineExceeded|DEADLINE_EXCEEDED|StreamStalled)\b|(?i:\btimed out\b|did not finish within|deadline exceeded)"
)
_OPERATION = re.compile(r"([\w.]+) did not finish within ([\d.]+ ?s)|stream '([^']+)' sent nothing for ([\d.]+ ?s)")


def upstream_timeout(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.last(_TIMEOUT)
    if line is None:
        return None
    named = _OPERATION.search(line)
    if named and named.group(1):
        what = f"{named.group(1)} timed out after {named.group(2)}"
        operation = named.group(1)
    elif named:
        what = f"stream {named.group(3)!r} went quiet for {named.group(4)}"
        operation = f"the {named.group(3)} stream"
    else:
        what = "an upstream call timed out"
        operation = "the call"
    return _probable(
        f"upstream timeout: {what}",
        0.7,
        [_log(line)],
        f"The upstream is slow or not answering: retry {operation} with exponential backoff and jitter, keep a "
        "deadline on every external call, and watch the upstream itself.",
    )


# Where an idle event loop waits for I/O; py-spy names methods with their class (EpollSelector.select).
_ADD_THE_WATCHDOG = "add horus-sdk's LoopWatchdog so that the next hang records the function and line it was stuck in."
# For a service that runs the SDK already: what it writes did not reach Horus, so say how it would.
_LET_HORUS_READ = (
    "let Horus read what horus-sdk (already in this service) writes: give this monitor's heartbeat check the "
    "crash_dir its LoopWatchdog writes to, and send the horus_sdk logger to a log Horus reads, so that the next "
    "post-mortem names the line it was stuck in."
)
_IDLE_FRAMES = frozenset({"select", "poll", "epoll", "kqueue", "_run_once", "run_forever"})
_PY_SPY_THREAD = re.compile(r'^Thread \S+ \((?P<state>\w+)\)(?::\s*"(?P<name>[^"]*)")?')
_PY_SPY_FRAME = re.compile(r"^\s+(?P<function>\S+) \((?P<file>[^()]+):(?P<line>\d+)\)")
_QUIET_CHECKS = frozenset({"log_staleness", "heartbeat", "file_exists", "artifact_growth"})


def hung_but_running(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """The process runs but its output stopped: where py-spy saw it, else what its CPU says."""
    if ev.check_type not in _QUIET_CHECKS or _said_by_the_service(found):
        return None  # what the service said about itself outranks a guess from outside
    matches = [
        m
        for section in ev.snapshot.get("processes") or []
        if isinstance(section, dict)
        for m in section.get("matches") or []
        if isinstance(m, dict) and not m.get("error")
    ]
    if not matches:
        return None
    evidence = [f"snapshot: {describe_process_state(ev.snapshot)}", f"check: {_clip(ev.reason)}"]
    if ev.lines:
        evidence.append(f"log (last line): {_clip(ev.lines[-1])}")
    deadline_advice = "Put a deadline on every external call (asyncio.wait_for or horus_sdk.deadline), and " + (
        _LET_HORUS_READ if ev.runs_the_sdk() else _ADD_THE_WATCHDOG
    )
    top = _py_spy_main_frame(ev.snapshot)
    if top is not None:
        state, function, file, line = top
        evidence.append(f"py-spy: main thread ({state}) in {function} ({file}:{line})")
        if function.rsplit(".", 1)[-1] in _IDLE_FRAMES or file.endswith(("selectors.py", "base_events.py")):
            return _probable(
                "an await that never returns (the event loop is idle, waiting on I/O, while nothing progresses)",
                0.65,
                evidence,
                deadline_advice,
            )
        return _probable(
            f"stuck in {function} at {os.path.basename(file)}:{line} (seen by py-spy)",
            0.75,
            evidence,
            f"{function} at {file}:{line} does not return: give it a deadline, or if it is synchronous, run it off "
            "the event loop (asyncio.to_thread).",
        )
    cpu = matches[0].get("cpu_percent")
    if isinstance(cpu, int | float) and cpu >= 90:
        return _probable(
            f"busy loop: running at {cpu:.0f}% CPU while its output stopped",
            0.5,
            evidence,
            "Install py-spy so that the next snapshot shows where it spins; look for a retry loop without a sleep.",
        )
    return _probable(
        "hung: the process is running but stopped producing output",
        0.45,
        evidence,
        deadline_advice,
    )


def _py_spy_main_frame(snapshot: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """(state, function, file, line) of the innermost frame of the main thread (else the first thread)
    in the first usable py-spy dump. py-spy lists each thread's frames innermost first."""
    for dump in (snapshot.get("py_spy") or {}).get("dumps") or []:
        output = dump.get("output") if isinstance(dump, dict) and not dump.get("error") else None
        if not output:
            continue
        threads: list[tuple[str | None, str, list[re.Match[str]]]] = []
        for text in output.splitlines():
            if thread := _PY_SPY_THREAD.match(text):
                threads.append((thread["name"], thread["state"], []))
            elif threads and (frame := _PY_SPY_FRAME.match(text)):
                threads[-1][2].append(frame)
        with_frames = [t for t in threads if t[2]]
        main = next((t for t in with_frames if t[0] == "MainThread"), with_frames[0] if with_frames else None)
        if main is not None:
            top = main[2][0]
            return main[1], top["function"], top["file"], top["line"]
    return None


_TRACEBACK = "Traceback (most recent call last):"
_TRACEBACK_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')


def unhandled_traceback(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    starts = [i for i, line in enumerate(ev.lines) if _TRACEBACK in line]
    if not starts:
        return None
    frame: re.Match[str] | None = None
    final: str | None = None
    for line in ev.lines[starts[-1] + 1 :]:
        if not line.strip():
            continue
        if line[:1].isspace():
            frame = _TRACEBACK_FRAME.search(line) or frame
            continue
        final = line
        break
    if final is None:
        return _probable(
            "an unhandled exception (its traceback is cut off)",
            0.4,
            [_log(ev.lines[starts[-1]])],
            "Log the whole traceback; see the service's log around the incident.",
        )
    if _already_cited(final, found):
        return None  # a specific rule explained this exception already
    exception = final.split(":", 1)[0].strip().rsplit(".", 1)[-1] or "exception"
    where = ""
    evidence = [_log(final)]
    if frame is not None:
        where = f" at {os.path.basename(frame['file'])}:{frame['line']} in {frame['function']}"
        evidence.append(f'log: File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}')
    return _probable(
        f"unhandled {exception}{where}",
        0.5,
        evidence,
        f"Handle {exception} where it is raised{where} (retry, skip the bad input, or fail loudly and exit so "
        "the supervisor restarts the service); do not let it stop the loop silently.",
    )


def recent_change(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """A commit or config change since last healthy that no other rule has cited already."""
    changes = ev.changes()
    if not (changes or ev.config_changed) or _cites_a_change(found):
        return None
    evidence = [_cite_commit(c, ev.last_healthy_at) for c in changes[:COMMITS_CITED]]
    if ev.config_changed:
        evidence.append("config: the config file changed since the service was last healthy")
    if changes:
        text = f'a recent change (commit {changes[0].short_sha} "{changes[0].subject}")'
        recommendation = f"Review commit {changes[0].short_sha}; roll it back if the failure began with it."
    else:
        text = "a recent change to the config file"
        recommendation = "Review the config change; restore the previous config if the failure began with it."
    return _probable(text, 0.2 if found else 0.3, evidence, recommendation)


RULES: tuple[Rule, ...] = (
    event_loop_stuck,
    blocked_in_its_log,
    disk_full,
    out_of_memory,
    address_in_use,
    import_or_config_error_after_change,
    dependency_refused,
    rate_limited,
    upstream_timeout,
    hung_but_running,
    unhandled_traceback,
    recent_change,
)
"""Every rule, in the order they run (specific before general); ties in confidence keep this order."""


def analyse(
    *,
    snapshot: Mapping[str, Any],
    crash_record: Mapping[str, Any] | None,
    log_tail: Sequence[str],
    reason: str,
    check_type: str,
    upstreams: Mapping[str, str],
    commits: Sequence[Commit],
    config_changed: bool,
    last_healthy_at: float | None,
    failing_since: float | None = None,
    rules: Sequence[Rule] = RULES,
) -> list[Hypothesis]:
    """The probable causes, most confident first; never empty (an ``unknown`` hypothesis says what was
    looked at). ``crash_record`` is the record or the snapshot's ``crash`` section (the snapshot's is used
    when None); ``log_tail`` the service's last log lines (the snapshot's when empty); ``upstreams`` each
    declared ``depends_on`` monitor's current status text (one that starts with healthy, ok, up, running,
    recovered, unknown, pending, disabled or "not checked" is not failing; anything else, such as
    "unhealthy: connection refused", is); ``commits`` those since ``last_healthy_at``.
    Deterministic: the same evidence gives the same answer."""
    lines = list(log_tail) or snapshot_log_tail(snapshot)
    crash = crash_record if crash_record is not None else snapshot.get("crash")
    evidence = Evidence(
        snapshot=snapshot,
        crash=crash if isinstance(crash, Mapping) and crash else None,
        lines=tuple(redact_line(line) for line in lines),
        reason=redact_line(reason),
        check_type=check_type,
        upstreams=dict(upstreams),
        commits=tuple(sorted(commits, key=lambda c: c.at, reverse=True)),
        config_changed=config_changed,
        last_healthy_at=last_healthy_at,
    )
    found: list[Hypothesis] = []
    for rule in rules:
        try:
            hypothesis = rule(evidence, tuple(found))
        except Exception as exc:
            log.error("rootcause.rule_failed", rule=getattr(rule, "__name__", repr(rule)), error=repr(exc))
            continue
        if hypothesis is not None:
            found.append(hypothesis)
    if not found:
        found.append(_unknown(evidence))
    return sorted(found, key=lambda h: -h.confidence)


def _unknown(ev: Evidence) -> Hypothesis:
    failing = ev.failing_upstreams()
    sections = [key for key in ("processes", "py_spy", "ports", "http", "logs", "heartbeats") if ev.snapshot.get(key)]
    looked_at = [
        f"check: {_clip(ev.reason)}",
        f"looked at: {len(ev.lines)} log lines; {'a' if ev.crash else 'no'} crash record; "
        f"{len(ev.upstreams)} declared upstreams ({len(failing)} failing); {len(ev.changes())} commits since last "
        f"healthy; config {'changed' if ev.config_changed else 'unchanged'}; "
        f"snapshot: {', '.join(sections) or 'nothing'}",
    ]
    if ev.snapshot.get("processes"):
        looked_at.append(f"snapshot: {describe_process_state(ev.snapshot)}")
    if ev.runs_the_sdk():
        advice = "Put a deadline on every external call (horus_sdk.deadline), and " + _LET_HORUS_READ
    else:
        advice = (
            "Instrument the service with horus-sdk (Heartbeat channels, deadline on external calls, LoopWatchdog) "
            "so that the next failure records what it was waiting for and where."
        )
    return Hypothesis(UNKNOWN_TITLE, 0.1, looked_at, advice)


def summarise(hypotheses: Sequence[Hypothesis], summariser: Callable[[str], str] | None) -> str | None:
    """A prose summary of ``hypotheses`` by ``summariser`` (for example a language model), or None.

    Off unless a summariser is given. It receives only what the hypotheses cite (their titles,
    confidences, quoted evidence lines and recommendations), never raw logs or the snapshot, and is told
    to use nothing else: a language model may summarise cited evidence, never add causes of its own.
    A summariser that fails or returns nothing gives None; the hypotheses stand on their own.
    """
    if summariser is None or not hypotheses:
        return None
    parts = [
        "Summarise these root-cause hypotheses for an incident report in two or three sentences. Use only "
        "the evidence quoted below; do not add causes, facts or advice that it does not support.",
    ]
    for number, hypothesis in enumerate(hypotheses, 1):
        parts.append(f"{number}. {hypothesis.title} (confidence {hypothesis.confidence:.2f})")
        parts += [f"   evidence: {line}" for line in hypothesis.evidence]
        if hypothesis.recommendation:
            parts.append(f"   recommendation: {hypothesis.recommendation}")
    try:
        text = summariser("\n".join(parts))
    except Exception as exc:
        log.warning("rootcause.summariser_failed", error=repr(exc))
        return None
    text = (text or "").strip()
    return text[:SUMMARY_LIMIT] or None
