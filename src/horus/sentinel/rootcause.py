"""Probable root causes of an incident, from the evidence Horus holds: deterministic rules, then a ranking.

:func:`analyse` runs every rule in :data:`RULES` over one :class:`Evidence`: the snapshot taken at
detection (processes, py-spy stacks, ports and who holds them, HTTP answers, disk space, logs), the crash
record, the service's log lines (JSON lines unpacked, each with its time when the line says it), the
check's reason, the declared upstreams' status, and the commits and config changes in the change window.
Each rule that recognises something returns a :class:`~horus.sentinel.hypothesis.Hypothesis` naming one
of :data:`~horus.sentinel.hypothesis.CAUSES`, quoting what supports it (the exact log line, redacted; a
crash record's frame; a snapshot fact; a commit) and saying what would prevent it.

**The ranking.** A rule gives its *prior*: how often its evidence means its cause (below). The ranking
then weighs the log lines a hypothesis quotes:

- *baseline*: a line also seen while the service was still healthy (timed five minutes or more before
  its last healthy look or before its output stopped, whichever came first: ``healthy_period_end``; in
  the tail, or among the lines the snapshot counted before it) is routine, not the failure: x0.5;
- *recency*: the closer a line came to when the output stopped, the more it counts: x1 within two
  minutes (or in the newest quarter of an untimed tail), down to x0.7 for the oldest;
- *repetition*: a line repeated three or more times since the service was last healthy: +0.05;
- *agreement*: each further kind of source that supports the same cause (crash record, stacks,
  snapshot fact, upstream status, a change, the check's own reason) adds 0.05, at most 0.15.

A count of zero is no mention ("0 errors, 0 throttled requests" says nothing is throttled). A stack seen by
py-spy says *where* the service waits, not *why*: when the log says why, the frame joins that cause's
evidence, and a frame in the standard library or site-packages is described through the service's own
caller. A confidence of 0.5 and above is **probable**, below it **possible**; when nothing reaches 0.3, the
first answer is ``unknown``, with the facts the snapshot holds and what evidence would have told more.

Priors: the service's own words about where its loop was stuck (crash record, LoopWatchdog's warning)
0.9, its watchdog ending it 0.85, BlockingDetector's report or an older crash record 0.8, a crash record
with no frame 0.6; disk full 0.9; out of memory 0.85; address in use 0.85; too many open files 0.85; an
import, syntax or config error 0.7 (0.85 after a change, 0.9 when the change touched the failing file);
connection refused by a failing declared dependency 0.85 (the dependency failing alone 0.7, refused alone
0.7); TLS failure 0.8; DNS failure 0.8; rate limited 0.8; authentication refused 0.8; database error 0.75;
permission denied 0.75; upstream timeout 0.7; a call that never returns seen by py-spy 0.7, the event loop
idle on I/O 0.65; SIGKILL 0.6; busy loop 0.5; hung with the process running 0.45; unhandled exception 0.5
(its end cut off 0.4); the bot's own kill switch (a trading trip in its status) 0.85; recent change 0.3
(0.2 beside other signals); unknown 0.1.

A rule is one small function ``(evidence, found) -> Hypothesis | None``, registered in :data:`RULES`;
``found`` holds the hypotheses of the rules before it, so a general rule (an unhandled traceback) can
stay quiet when a specific one already explained the same line. A rule that breaks is logged
(``rootcause.rule_failed``) and skipped: one bad rule must not cost the post-mortem. A service that shows
any sign of running horus-sdk (a crash record, its log lines, a heartbeat) is never told to add it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from horus import humanize
from horus.log import get_logger
from horus.sentinel.changes import Commit
from horus.sentinel.fingerprint import failure_kind, normalise
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.logtext import TELLING, LogLine, healthy_period_end, read_lines
from horus.sentinel.snapshot import describe_process_state, redact_line
from horus_sdk.control_files import holding_trip

__all__ = ["RULES", "UNKNOWN_TITLE", "Evidence", "Rule", "analyse", "summarise"]

log = get_logger(__name__)

UNKNOWN_TITLE = "unknown: no known failure signature in the evidence"
QUOTE_LIMIT = 300
COMMITS_CITED = 3
SUMMARY_LIMIT = 4000
PROBABLE = 0.5
# Below this, no hypothesis is worth leading with: the answer is "unknown", with the facts.
UNKNOWN_BELOW = 0.3
CONFIDENCE_CAP = 0.97
BASELINE_FACTOR = 0.5
OLDEST_FACTOR = 0.7
RECENT_SECONDS = 120.0
REPEATED = 3
REPETITION_BONUS = 0.05
AGREEMENT_BONUS = 0.05
AGREEMENT_MAX = 0.15
# An upstream whose status text starts with one of these is not failing.
_NOT_FAILING = ("healthy", "ok", "up", "running", "recovered", "unknown", "pending", "disabled", "not checked")
# Check failures that mean "the output stopped or nobody answers", where a running process is hung.
# A process that uses this much of a core while its output has stopped is spinning (on a loaded machine a
# spinning process gets only its share of a core).
SPINNING_CPU_PERCENT = 40.0
LOADED_SAMPLE_PERCENT = 15.0
_QUIET_KINDS = frozenset(
    {"stale", "no_output", "no_response", "channel_stalled", "no_heartbeat", "too_small", "missing", "unhealthy"}
)


class Quote(str):
    """An evidence line that quotes a log line: a ``str`` (as stored and shown) that remembers the whole
    line it quotes, so that the ranking can find it in the log and weigh it."""

    line: str

    def __new__(cls, text: str, line: str) -> Quote:
        quote = super().__new__(cls, text)
        quote.line = line
        return quote


@dataclass(frozen=True)
class Evidence:
    """Everything the rules may look at, read-only. ``lines`` is the log tail as text (JSON lines unpacked,
    redacted), oldest first, and ``times`` when each was written (None when the log does not say)."""

    snapshot: Mapping[str, Any]
    crash: Mapping[str, Any] | None
    lines: tuple[str, ...]
    reason: str
    check_type: str
    upstreams: Mapping[str, str]
    commits: tuple[Commit, ...]
    config_changed: bool
    last_healthy_at: float | None
    failing_since: float | None = None
    times: tuple[float | None, ...] = ()
    baseline: frozenset[str] = frozenset()
    # When each line's log file was last written (its modification time), when the snapshot says.
    written: tuple[float | None, ...] = ()

    def strongest(self, pattern: re.Pattern[str], accept: Callable[[str], bool] | None = None) -> str | None:
        """The log line that best shows ``pattern`` (a count of zero is no mention): one not seen while the
        service was healthy before one that was, then an error before a warning before the rest, then the
        newest. ``accept`` narrows which mentions count."""
        best: tuple[float, int, int] | None = None
        chosen: str | None = None
        for index, line in enumerate(self.lines):
            if not _mention(pattern, line) or (accept is not None and not accept(line)):
                continue
            weight, _ = _line_weight(self, line)
            rank = (weight, _severity(line), index)
            if best is None or rank >= best:
                best, chosen = rank, line
        return chosen

    def count(self, pattern: re.Pattern[str], accept: Callable[[str], bool] | None = None) -> int:
        return sum(1 for line in self.lines if _mention(pattern, line) and (accept is None or accept(line)))

    def failing_upstreams(self) -> dict[str, str]:
        return {
            name: status
            for name, status in sorted(self.upstreams.items())
            if not status.strip().lower().startswith(_NOT_FAILING)
        }

    def changes(self) -> list[Commit]:
        """The commits in the change window, newest first (the caller chose the window)."""
        return list(self.commits)

    def failure_began(self) -> float | None:
        """When the failure began, as near as Horus knows: just after the last healthy look."""
        return self.last_healthy_at if self.last_healthy_at is not None else self.failing_since

    @functools.cached_property
    def positions(self) -> dict[str, list[int]]:
        """Where each distinct line stands in ``lines``."""
        found: dict[str, list[int]] = {}
        for index, text in enumerate(self.lines):
            found.setdefault(text, []).append(index)
        return found

    @functools.cached_property
    def routine(self) -> frozenset[str]:
        """The normalised lines seen while the service was healthy: in the tail before the healthy period
        ended, or in the snapshot's baseline."""
        until = self.healthy_until()
        if until is None:
            return self.baseline
        seen = {
            normalise(text) for text, at in zip(self.lines, self.times, strict=False) if at is not None and at <= until
        }
        return self.baseline | seen

    @functools.cached_property
    def stopped_at(self) -> float | None:
        return self.output_stopped_at()

    def healthy_until(self) -> float | None:
        """The end of the healthy period (:func:`~horus.sentinel.logtext.healthy_period_end`)."""
        return healthy_period_end(self.failure_began(), self.output_stopped_at())

    def output_stopped_at(self) -> float | None:
        """When the service last wrote: the newest timed log line, else the newest log's modification."""
        timed = [at for at in self.times if at is not None]
        if timed:
            return max(timed)
        taken = self.snapshot.get("taken_at")
        ages = [
            float(entry["age_seconds"])
            for entry in self.snapshot.get("logs") or []
            if isinstance(entry, dict) and isinstance(entry.get("age_seconds"), int | float)
        ]
        if ages and isinstance(taken, int | float):
            return float(taken) - min(ages)
        return None

    def http_statuses(self) -> list[tuple[str, int]]:
        return [
            (str(entry.get("url")), int(entry["status"]))
            for entry in self.snapshot.get("http") or []
            if isinstance(entry, dict) and isinstance(entry.get("status"), int)
        ]

    def processes(self) -> list[Mapping[str, Any]]:
        """The service's processes the snapshot found running."""
        return [
            match
            for section in self.snapshot.get("processes") or []
            if isinstance(section, dict)
            for match in section.get("matches") or []
            if isinstance(match, dict) and not match.get("error")
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


def _probable(cause: str, text: str, confidence: float, evidence: list[str], recommendation: str | None) -> Hypothesis:
    return Hypothesis(_labelled(text, confidence), confidence, evidence, recommendation, cause)


def _labelled(text: str, confidence: float) -> str:
    bare = text.split(": ", 1)[1] if text.startswith(("probable: ", "possible: ")) else text
    return f"{'probable' if confidence >= PROBABLE else 'possible'}: {bare}"


_ERROR_LEVEL = re.compile(
    r"(?i)\b(?:error|err|fatal|critical|crit|panic|severe|emerg|alert)\b|^\s*(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception)\b"
)
_WARNING_LEVEL = re.compile(r"(?i)\bwarn(?:ing)?\b")


def _severity(line: str) -> int:
    """2 for a line logged as an error (or an exception's own line), 1 for a warning, 0 for the rest."""
    head = line[:120]
    if _ERROR_LEVEL.search(head):
        return 2
    return 1 if _WARNING_LEVEL.search(head) else 0


# A count of zero next to a phrase: "0 throttled", "throttled=0", "errors: 0".
_ZERO_BEFORE = re.compile(r"(?<![\d.,])0+\s*(?:x\s*)?$")
_ZERO_AFTER = re.compile(r"^\s*[:=]\s*0+(?![\d.,])")


def _mention(pattern: re.Pattern[str], line: str) -> re.Match[str] | None:
    """The first match of ``pattern`` in ``line`` that is a mention: not a count of zero, and not a part
    of a file path or URL (``/srv/oom-killer-reports/``, ``/v1/rate_limited``)."""
    for match in pattern.finditer(line):
        before = line[max(0, match.start() - 12) : match.start()]
        after = line[match.end() : match.end() + 8]
        if _ZERO_BEFORE.search(before) or _ZERO_AFTER.search(after) or _inside_a_path(line, match):
            continue
        return match
    return None


def _inside_a_path(line: str, match: re.Match[str]) -> bool:
    start = max(line.rfind(" ", 0, match.start()), line.rfind("\t", 0, match.start())) + 1
    end = line.find(" ", match.end())
    token = line[start : end if end >= 0 else len(line)]
    within = line[start : match.start()]
    return "/" in within and match.end() <= start + len(token)


def _log(line: str, pattern: re.Pattern[str] | None = None) -> Quote:
    """``log: <line>``, clipped around what ``pattern`` matched so that the match is always shown."""
    text = line.strip()
    if len(text) > QUOTE_LIMIT and pattern is not None and (match := _mention(pattern, text)):
        start = max(0, min(match.start() - QUOTE_LIMIT // 3, len(text) - QUOTE_LIMIT + 2))
        window = text[start : start + QUOTE_LIMIT - 2]
        text = ("…" if start else "") + window + ("…" if start + len(window) < len(text) else "")
        return Quote(f"log: {text}", line)
    return Quote(f"log: {_clip(text)}", line)


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def _cite_commit(commit: Commit, ev: Evidence, touched: str | None = None) -> str:
    when = ""
    began = ev.failure_began()
    if began is not None:
        gap = commit.at - began
        when = (
            f", {humanize.duration(-gap)} before the service was last seen healthy"
            if gap < 0
            else f", {humanize.duration(gap)} after it was last seen healthy"
        )
    change = f"; it changed {touched}" if touched else ""
    return f'commit {commit.short_sha} "{commit.subject}" by {commit.author}{when}{change}'


def _deployed(commit: Commit, ev: Evidence) -> str | None:
    """A snapshot fact: the service's process started after ``commit``, so it runs that code."""
    for process in ev.processes():
        age = process.get("age_seconds")
        taken = ev.snapshot.get("taken_at")
        if isinstance(age, int | float) and isinstance(taken, int | float):
            started = float(taken) - float(age)
            if started >= commit.at:
                return (
                    f"snapshot: the process (pid {process.get('pid')}) started "
                    f"{humanize.duration(started - commit.at)} after commit {commit.short_sha}: it runs that code"
                )
    return None


# The config file's modification time fell in the change window (see horus.sentinel.diagnosis).
_CONFIG_CHANGED = "config: the config file changed in the change window, before or after the last healthy look"


def _cites_a_change(found: Sequence[Hypothesis]) -> bool:
    return any(e.startswith(("commit ", "config:")) for h in found for e in h.evidence)


def _already_cited(line: str, found: Sequence[Hypothesis]) -> bool:
    return any(isinstance(e, Quote) and e.line == line for h in found for e in h.evidence)


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
            "event_loop_blocked" if crash.get("kind") == "loop_blocked" else "await_never_returned",
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
        return _probable(
            "event_loop_blocked",
            f"event loop blocked in {where}{since}",
            confidence,
            evidence,
            _unblock(function, where, code),
        )
    operation = str(operations[0]["name"]) if operations else function
    channel = f" (channel {crash['channel']!r} made no progress)" if crash.get("channel") else ""
    return _probable(
        "await_never_returned",
        f"stuck in {where}{channel}{since}",
        confidence,
        evidence,
        _await_deadline(where, operation),
    )


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
    evidence: list[str] = [_log(newest.line)]
    if where is None and newest.kind == "channel_stalled":
        return _probable(
            "await_never_returned",
            f"an await that never returned (channel {newest.channel!r} made no progress, said its own watchdog)",
            0.8,
            evidence,
            f"Put a deadline on every await in the {newest.channel} channel's path (horus_sdk.deadline), so that "
            "a call that hangs becomes an error and the next crash record names the operation in flight.",
        )
    if where is None:
        seconds = f" for {newest.seconds} s" if newest.seconds else ""
        return _probable(
            "event_loop_blocked",
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
        return _probable(
            "await_never_returned",
            f"stuck in {where}{channel}{ended}",
            confidence,
            evidence,
            _await_deadline(where, function),
        )
    if newest.kind == "blocked_briefly":
        seconds = f" for {newest.seconds} s" if newest.seconds else ""
        return _probable(
            "event_loop_blocked",
            f"event loop blocked{seconds} in {where}",
            0.8,
            evidence,
            _unblock(function, where, newest.code),
        )
    return _probable(
        "event_loop_blocked",
        f"event loop blocked in {where}{ended}",
        confidence,
        evidence,
        _unblock(function, where, newest.code),
    )


# --- what the log says went wrong ----------------------------------------------------------------------


def _address(line: str) -> str | None:
    """The address a line names (host:port, ('host', port), "port N"), never a time like 02:23:01."""
    if match := _ADDRESS_IN_LINE.search(line):
        host = match["host"] or match["qhost"] or match["phost"]
        port = match["port"] or match["qport"] or match["pport"] or match["bare"]
        return f"{host}:{port}" if host else f"port {port}"
    return None


_ADDRESS_IN_LINE = re.compile(
    r"(?P<host>\[[0-9a-fA-F:]+\]|\d{1,3}(?:\.\d{1,3}){3}|localhost|[A-Za-z][\w-]*(?:\.[\w-]+)+)"
    r":(?P<port>\d{2,5})\b"
    r"|\(['\"](?P<qhost>[^'\"]+)['\"],\s*(?P<qport>\d{2,5})\)"
    r"|host \"?(?P<phost>[\w.-]+)\"?.{0,60}?port (?P<pport>\d{2,5})"
    r"|\bport (?P<bare>\d{2,5})\b",
    re.IGNORECASE,
)


def _holder(ev: Evidence, port: str | None) -> str | None:
    """Who the snapshot saw listening on ``port`` (from a ports or http entry's ``holder``)."""
    for entry in [*(ev.snapshot.get("ports") or []), *(ev.snapshot.get("http") or [])]:
        if not isinstance(entry, dict):
            continue
        holder = entry.get("holder")
        if not isinstance(holder, dict) or holder.get("pid") is None:
            continue
        where = entry.get("port") or _port_of_url(str(entry.get("url") or ""))
        if port is None or str(where) == port:
            command = holder.get("cmdline") or holder.get("name") or "?"
            return f"snapshot: pid {holder['pid']} ({_clip(str(command))}) listens on port {where}"
    return None


def _port_of_url(url: str) -> str | None:
    match = re.search(r"://[^/:]+:(\d+)", url)
    return match.group(1) if match else None


_DISK_FULL = re.compile(
    r"(?i)\bENOSPC\b|no space left on device|disk quota exceeded|\bEDQUOT\b|database or disk is full"
    r"|not enough space on the disk|could not extend file"
)


def disk_full(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.strongest(_DISK_FULL)
    if line is None:
        return None
    evidence: list[str] = [_log(line, _DISK_FULL)]
    count = ev.count(_DISK_FULL)
    if count > 1:
        evidence.append(f"log: {count} of the last {len(ev.lines)} lines say so")
    for disk in ev.snapshot.get("disk") or []:
        if isinstance(disk, dict) and isinstance(disk.get("free_bytes"), int):
            total = disk.get("total_bytes") or 0
            if disk["free_bytes"] < max(1 << 20, 0.01 * total):
                evidence.append(
                    f"snapshot: {disk.get('path')} has {humanize.size(disk['free_bytes'])} free"
                    f" of {humanize.size(int(total))}"
                )
    return _probable(
        "disk_full",
        "disk full (no space left on device)",
        0.9,
        evidence,
        "Free space on the volume; rotate and cap logs and other output (logrotate, RotatingFileHandler), and "
        "watch disk usage so that it is noticed before it is full.",
    )


# "OOM" as a word, not inside a path or a name ("/var/OOM-reports/", "OOM_SCORE").
_OUT_OF_MEMORY = re.compile(
    r"(?i)\b\w*MemoryError\b|\bout of memory\b|unable to allocate \d|(?<![/\w.-])OOM(?![/\w.-])"
    r"|oom[-_ ]kill(?:ed|er)?\b|killed process \d+|cannot allocate memory|\bENOMEM\b|std::bad_alloc"
    r"|heap out of memory"
    r"|Java heap space|GC overhead limit exceeded|failed to allocate \d+ bytes"
)
# How a shell, a supervisor or a runtime says its child got SIGKILL.
_KILLED = re.compile(
    r"(?i)^\s*Killed\s*$|(?:line \d+|\bsh|\bbash):?\s+\d+\s+Killed\b|\bKilled\b.*\bsignal 9\b|\bsignal: killed\b"
    r"|\bSIGKILL\b|\bsignal 9\b|exit(?:ed)?(?: with)?(?: status| code)?:? ?(?:-9|137)\b|\bstatus=9/KILL\b"
)
_MEMORY_ADVICE = (
    "Find what grows (tracemalloc, RSS over time) and bound it (caches, queues, buffered responses); raise "
    "the memory limit only once the growth is understood."
)


# "Perhaps out of memory?" (gunicorn, of a worker sent SIGKILL) is a guess, not a statement.
_HEDGED = re.compile(r"(?i)\b(?:perhaps|maybe|possibly|might be|probably)\b[^.;]{0,20}$")


def _states_out_of_memory(line: str) -> bool:
    match = _mention(_OUT_OF_MEMORY, line)
    return match is not None and not _HEDGED.search(line[: match.start()])


def out_of_memory(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.strongest(_OUT_OF_MEMORY, accept=_states_out_of_memory)
    if line is None:
        return None
    evidence: list[str] = [_log(line, _OUT_OF_MEMORY)]
    killed = ev.strongest(_KILLED)
    if killed is not None and killed != line:
        evidence.append(_log(killed, _KILLED))
    evidence += _memory_facts(ev)
    return _probable("out_of_memory", "out of memory (killed or MemoryError)", 0.85, evidence, _MEMORY_ADVICE)


def _memory_facts(ev: Evidence) -> list[str]:
    facts = []
    for process in ev.processes():
        limit = (process.get("rlimits") or {}).get("as")
        if isinstance(limit, list) and limit and isinstance(limit[0], int) and limit[0] > 0:
            facts.append(f"snapshot: pid {process.get('pid')} may use at most {humanize.size(limit[0])} (RLIMIT_AS)")
    return facts


def killed(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    if any(h.cause == "out_of_memory" for h in found):
        return None
    line = ev.strongest(_KILLED)
    evidence: list[str] = []
    if line is not None:
        evidence.append(_log(line, _KILLED))
    if _KILLED.search(ev.reason):
        evidence.append(f"check: {_clip(ev.reason)}")
    if not evidence:
        return None
    return _probable(
        "killed",
        "killed by SIGKILL (often the kernel's OOM killer)",
        0.6,
        evidence + _memory_facts(ev),
        _MEMORY_ADVICE + " Look for 'Out of memory: Killed process' in the kernel log (dmesg, journalctl -k); "
        "if it is not there, find who sends the signal.",
    )


_ADDRESS_IN_USE = re.compile(r"(?i)\bEADDRINUSE\b|address already in use|\[Errno (?:98|48)\]|bind\(\) .* failed")


def address_in_use(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.strongest(_ADDRESS_IN_USE)
    if line is None:
        return None
    address = _address(line)
    port = address.rsplit(":", 1)[-1].removeprefix("port ") if address else None
    evidence: list[str] = [_log(line, _ADDRESS_IN_USE)]
    holder = _holder(ev, port)
    if holder:
        evidence.append(holder)
    where = address or "its port"
    return _probable(
        "address_in_use",
        f"address in use: another process holds {where}",
        0.85,
        evidence,
        f"Find the holder of {where} (lsof -i, ss -ltnp): often the previous instance still shutting down. Let "
        "the supervisor wait for the old process to exit before starting a new one, or set SO_REUSEADDR.",
    )


_CHANGE_ERROR = re.compile(
    r"\b(?:ModuleNotFoundError|ImportError|SyntaxError|IndentationError|TabError|\w*Config(?:uration)?Error"
    r"|ValidationError)\b"
    r"|\bKeyError: '[A-Z][A-Z0-9_]{2,}'"  # a missing environment variable: os.environ["API_KEY"]
    r"|(?i:\b(?:invalid|missing|bad|malformed)\s+(?:config(?:uration)?|setting|environment variable)\b)"
    r"|(?i:\bconfig(?:uration)?(?:\s+file)?\s+(?:error|is invalid|not found|is missing)\b)"
    r"|(?i:\benvironment variable \S+ (?:is )?(?:not set|missing|required)\b)"
    # A config file that does not parse: the exceptions of YAML, TOML and INI readers.
    r"|\b(?:yaml|ruamel\.yaml|toml|tomllib|tomli|configparser)\.(?:\w+\.)*\w+Error\b"
    r"|\b(?:ScannerError|ParserError|ComposerError|TOMLDecodeError|MissingSectionHeaderError|DuplicateSectionError)\b"
)


def import_or_config_error(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.strongest(_CHANGE_ERROR)
    if line is None:
        return None
    evidence: list[str] = [_log(line, _CHANGE_ERROR)]
    trace = _traceback_ending_at(ev, line)
    site = trace.error_site() if trace else None
    if site is not None:
        evidence.append(Quote(f"log: {site.text.strip()}", site.text))
    exception = line.split(":", 1)[0].strip().rsplit(".", 1)[-1]
    what = exception if re.fullmatch(r"\w+(?:Error|Exception)", exception) else "configuration error"
    at = f" in {os.path.basename(site.file)}:{site.line}" if site else ""
    changes = ev.changes()
    touched_commit, touched = _commit_touching(changes, site.file if site else None)
    culprit_commit = touched_commit or (changes[0] if changes else None)
    if culprit_commit is not None:
        evidence.append(_cite_commit(culprit_commit, ev, touched))
        deployed = _deployed(culprit_commit, ev)
        if deployed:
            evidence.append(deployed)
        evidence += [_cite_commit(c, ev) for c in changes[:COMMITS_CITED] if c is not culprit_commit][:2]
    if ev.config_changed:
        evidence.append(_CONFIG_CHANGED)
    if culprit_commit is not None:
        culprit = f'commit {culprit_commit.short_sha} "{culprit_commit.subject}"'
        confidence = 0.9 if touched else 0.85
        file = f" ({touched})" if touched else ""
        recommendation = (
            f"Fix or revert {culprit}{file}: the service has failed with {what}{at} since it went live. Run an "
            "import and config smoke test (python -c 'import main', a config validation) before every deploy, "
            "so that this fails in CI, not in production."
        )
        text = f"{what}{at} after {culprit}"
    elif ev.config_changed:
        confidence = 0.85
        recommendation = "Check the config change against what the service expects, and validate it before reloading."
        text = f"{what}{at} after a config change"
    else:
        confidence = 0.7
        recommendation = (
            f"The service cannot start: fix the {what}{at} (a missing module, a broken file, a missing setting); "
            "give the monitor its work_tree so that the next incident names the commit that brought it."
        )
        text = f"{what}{at}: the service cannot start"
    return _probable("import_or_config_error", text, confidence, evidence, recommendation)


def _commit_touching(commits: Sequence[Commit], path: str | None) -> tuple[Commit | None, str | None]:
    if not path:
        return None, None
    for commit in commits:
        for name in commit.files:
            if path.endswith(name) or os.path.basename(path) == os.path.basename(name):
                return commit, name
    return None, None


_REFUSED = re.compile(
    r"(?i)\bECONNREFUSED\b|connection refused|ConnectionRefusedError|connect call failed|\[Errno 111\]"
    r"|\bError 111\b|actively refused"
)


def dependency_refused(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """Connections refused, and/or a declared upstream failing now: this service is probably a symptom."""
    line = ev.strongest(_REFUSED)
    failing = ev.failing_upstreams()
    if line is None and not failing:
        return None
    evidence: list[str] = [f"upstream {name}: {_clip(status)}" for name, status in failing.items()]
    address = _address(line) if line else None
    if line is not None:
        evidence.insert(0, _log(line, _REFUSED))
        port = address.rsplit(":", 1)[-1].removeprefix("port ") if address else None
        for entry in ev.snapshot.get("ports") or []:
            if isinstance(entry, dict) and str(entry.get("port")) == port and entry.get("accepting") is False:
                evidence.append(f"snapshot: nothing accepts connections on port {port} ({entry.get('detail')})")
    if failing:
        names = ", ".join(failing)
        text = f"connection refused by declared dependency {names}" if line else f"declared dependency {names} failing"
        return _probable(
            "dependency_refused",
            text,
            0.85 if line else 0.7,
            evidence,
            f"Heal {names} first: this service fails because it does. Make the service retry its connections "
            "with exponential backoff and jitter, and report the dependency as down rather than hanging on it.",
        )
    whom = address or _refusing_port(ev) or "an upstream"
    return _probable(
        "dependency_refused",
        f"connection refused by {whom}",
        0.7,
        evidence,
        f"Check that {whom} is running and listening; declare it in depends_on (and watch it) so that Horus heals "
        "it rather than this service. Retry connections with exponential backoff and jitter.",
    )


def _refusing_port(ev: Evidence) -> str | None:
    """The address the snapshot found refusing connections, when the log named none."""
    for entry in ev.snapshot.get("ports") or []:
        if isinstance(entry, dict) and entry.get("accepting") is False and "refused" in str(entry.get("detail")):
            return f"{entry.get('host')}:{entry.get('port')}"
    return None


@dataclass(frozen=True)
class Signature:
    """A cause the log names in so many words: its pattern, prior, title and advice."""

    cause: str
    pattern: re.Pattern[str]
    prior: float
    title: str
    advice: str
    # Snapshot HTTP statuses that say the same.
    statuses: frozenset[int] = frozenset()
    # Words that point at the cause only in general; a line they match is this cause's only when no cause in
    # ``more_precise`` is named on the same line.
    generic: re.Pattern[str] | None = None
    more_precise: tuple[str, ...] = ()


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "too_many_open_files",
        re.compile(r"(?i)too many open files|\bEMFILE\b|\bENFILE\b|\[Errno 24\]"),
        0.85,
        "too many open files (out of file descriptors)",
        "Find what leaks descriptors (connections or files never closed: ls /proc/PID/fd) and close them; raise "
        "LimitNOFILE / ulimit -n only once the leak is understood.",
    ),
    Signature(
        "tls_failure",
        re.compile(
            r"(?i)CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSLCertVerificationError|\bSSLError\b"
            r"|x509: certificate|WRONG_VERSION_NUMBER|tlsv1 alert|ssl handshake|handshake failure"
            r"|self[- ]signed certificate|certificate has expired|unable to get local issuer certificate"
        ),
        0.8,
        "TLS failure (the certificate or the handshake was refused)",
        "Check the upstream's certificate (expiry, host name, chain) and the CA bundle the service trusts; never "
        "turn verification off to get past it.",
    ),
    Signature(
        "dns_failure",
        re.compile(
            r"(?i)Name or service not known|Temporary failure in name resolution|No address associated with hostname"
            r"|nodename nor servname|getaddrinfo (?:failed|ENOTFOUND|EAI_AGAIN)|\bENOTFOUND\b|no such host"
            r"|Could not resolve host|NameResolutionError|Failed to resolve|\bgaierror\b|\[Errno -[235]\]"
        ),
        0.8,
        "DNS failure (a host name could not be resolved)",
        "Check the host name in the service's config and the machine's resolver (/etc/resolv.conf); retry with "
        "backoff, since resolvers fail for moments too.",
    ),
    Signature(
        "rate_limited",
        re.compile(
            r"(?i)\b(?:http(?:/\d(?:\.\d)?)?|status(?:[_ ]code)?|code|response)\W{0,3}429\b"
            r"|\b429\s+(?:too many requests|client error)|too many requests|\bTooManyRequests"
            # "rate limit exceeded", "rate-limited"; not a setting such as "rate_limit_per_second=10"
            r"|\brate[ -]?limit(?:ed|ing|\s+(?:exceeded|reached|hit))\b|\bthrottl(?:ed|ing)\b|ThrottlingException"
            r"|\bThrottling\b|\brate exceeded\b|\bSlowDown\b|RequestLimitExceeded|ProvisionedThroughputExceeded"
            r"|RESOURCE_EXHAUSTED|ResourceExhausted|quota exceeded|\bretry[- ]after\b"
        ),
        0.8,
        "rate limited by an upstream (HTTP 429, throttling)",
        "Add explicit rate-limit detection (HTTP 429, throttling errors, Retry-After) and exponential backoff with "
        "jitter; log a heartbeat every 60 s regardless of work state, so that waiting out a limit is not mistaken "
        "for a hang.",
        frozenset({429}),
    ),
    Signature(
        "auth_failure",
        re.compile(
            r"(?i)\b(?:http|status(?:[_ ]code)?|code|response)\W{0,3}(?:401|403)\b|\b401 Unauthorized\b"
            r"|\b403 Forbidden\b|\bAuthenticationError\b|\bUnauthorized\b|invalid (?:api[ _-]?key|token|signature"
            r"|credentials)|(?:token|credentials?|signature) (?:has )?expired|password authentication failed"
            r"|access denied for user|InvalidClientTokenId|SignatureDoesNotMatch|ExpiredToken|UNAUTHENTICATED"
            r"|Permission denied \(publickey"
        ),
        0.8,
        "authentication refused by an upstream (expired or wrong credentials)",
        "Renew or fix the credentials the service uses (an expired token, a rotated key, a wrong secret), and make "
        "the service report an authentication failure loudly instead of retrying it forever.",
        frozenset({401, 403}),
    ),
    Signature(
        "database_error",
        re.compile(
            r"(?i)database is locked|deadlock detected|could not serialize access|too many connections"
            r"|server closed the connection unexpectedly|lock wait timeout exceeded|QueuePool limit"
            r"|connection pool exhausted|remaining connection slots are reserved|database table is locked"
            r"|the database system is (?:shutting down|starting up|in recovery mode)|lost connection to \w+ server"
            r"|connection was closed in the middle of operation|terminating connection due to"
        ),
        0.75,
        "database error (locked, out of connections or gone)",
        "Find who holds the lock or the connections (pg_stat_activity, another writer on the SQLite file); keep "
        "transactions short, bound the pool, and retry with backoff.",
        # Any exception of a database driver's own module: the failure is in talking to the database, unless
        # the same line says it was refused, timed out or not allowed, which names the cause more precisely.
        generic=re.compile(
            r"\b(?:asyncpg|psycopg2?|sqlalchemy|pymongo|motor|redis|aioredis|sqlite3|pymysql|MySQLdb|aiomysql"
            r"|aiosqlite|cassandra|elasticsearch)\.(?:\w+\.)*\w+(?:Error|Exception)\b"
        ),
        more_precise=(
            "dependency_refused",
            "upstream_timeout",
            "auth_failure",
            "dns_failure",
            "disk_full",
            "tls_failure",
        ),
    ),
    Signature(
        "permission_denied",
        re.compile(
            r"(?i)\bPermissionError\b|\[Errno 13\]|\bEACCES\b|\bEPERM\b|permission denied(?! \(publickey)"
            r"|Read-only file system|\bEROFS\b|\[Errno 30\]|operation not permitted"
        ),
        0.75,
        "permission denied (a file or resource the service needs)",
        "Give the service's user the access it needs (ownership, mode, a writable mount), or point it at a path "
        "it may write; a deploy or a new mount that changed ownership is the usual cause.",
    ),
)


def _error_brought_by(commit: Commit, ev: Evidence, found: Sequence[Hypothesis], *, deployed: bool) -> Quote | None:
    """The unhandled exception's line, when it was first written after ``commit`` and never while the service
    was healthy: the error the change brought. An untimed line counts only when the running process is
    known to run the new code (``deployed``)."""
    for hypothesis in found:
        if hypothesis.cause != "unhandled_exception":
            continue
        for quote in _quotes(hypothesis):
            places = ev.positions.get(quote.line)
            at = ev.times[places[0]] if places and places[0] < len(ev.times) else None
            if normalise(quote.line) in ev.routine:
                continue
            if at is not None:
                if at >= commit.at:
                    return quote
                continue
            # An untimed line: the running process runs the new code; or nothing runs now (a job, or a
            # service that crashed) and the log holding the error was written after the commit.
            modified = ev.written[places[-1]] if places and places[-1] < len(ev.written) else None
            if deployed or (not ev.processes() and modified is not None and modified >= commit.at):
                return quote
    return None


def _pattern_of(cause: str) -> re.Pattern[str]:
    """The log pattern of a cause named in so many words (called as RULES is built, once all are defined)."""
    table = {"dependency_refused": _REFUSED, "upstream_timeout": _TIMEOUT, "disk_full": _DISK_FULL}
    table.update((signature.cause, signature.pattern) for signature in SIGNATURES)
    return table[cause]


def _signature_rule(signature: Signature) -> Rule:
    precise = [_pattern_of(cause) for cause in signature.more_precise]
    either = (
        re.compile(f"{signature.pattern.pattern}|{signature.generic.pattern}")
        if signature.generic
        else signature.pattern
    )

    def mine(line: str) -> bool:
        if _mention(signature.pattern, line):
            return True
        return not any(_mention(p, line) for p in precise)

    def rule(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
        line = ev.strongest(either, accept=mine)
        evidence: list[str] = []
        if line is not None:
            evidence.append(_log(line, either))
            count = ev.count(either, accept=mine)
            if count > 1:
                evidence.append(f"log: {count} of the last {len(ev.lines)} lines say so")
        if _mention(signature.pattern, ev.reason):
            evidence.append(f"check: {_clip(ev.reason)}")
        evidence += [
            f"snapshot: HTTP {status} from {url}" for url, status in ev.http_statuses() if status in signature.statuses
        ]
        if signature.cause == "too_many_open_files":
            evidence += _descriptor_facts(ev)
        if not any(e.startswith(("log: ", "check: ", "snapshot: HTTP")) for e in evidence):
            return None
        address = _address(line) if line else None
        title = f"{signature.title}: {address}" if address and signature.cause in _NAMES_AN_ADDRESS else signature.title
        return _probable(signature.cause, title, signature.prior, evidence, signature.advice)

    rule.__name__ = signature.cause
    rule.__doc__ = f"The log says {signature.title}."
    return rule


_NAMES_AN_ADDRESS = frozenset({"tls_failure", "database_error"})


def _descriptor_facts(ev: Evidence) -> list[str]:
    facts = []
    for process in ev.processes():
        limit = (process.get("rlimits") or {}).get("nofile")
        fds = process.get("num_fds")
        if isinstance(fds, int) and isinstance(limit, list) and limit and isinstance(limit[0], int) and limit[0] > 0:
            facts.append(f"snapshot: pid {process.get('pid')} has {fds} descriptors open, limit {limit[0]}")
    return facts


_TIMEOUT = re.compile(
    # Any exception class named for a timeout: ReadTimeout, SocketTimeoutError, ConnectTimeoutError...
    r"\b\w*Timeout(?:Error|Exception)?\b(?=[:\s(]|$)|\b(?:DeadlineExceeded|DEADLINE_EXCEEDED|StreamStalled|ETIMEDOUT)\b"
    r"|\bsocket\.timeout\b|(?i:\btimed out\b|did not finish within|deadline exceeded|read timeout|connect timeout"
    r"|operation timed out|timeout (?:on reading|while|waiting))"
)
_OPERATION = re.compile(r"([\w.]+) did not finish within ([\d.]+ ?s)|stream '([^']+)' sent nothing for ([\d.]+ ?s)")


def upstream_timeout(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    line = ev.strongest(_TIMEOUT)
    if line is None:
        return None
    named = _OPERATION.search(line)
    address = _address(line)
    if named and named.group(1):
        what = f"{named.group(1)} timed out after {named.group(2)}"
        operation = named.group(1)
    elif named:
        what = f"stream {named.group(3)!r} went quiet for {named.group(4)}"
        operation = f"the {named.group(3)} stream"
    else:
        what = f"a call to {address} timed out" if address else "an upstream call timed out"
        operation = "the call"
    evidence: list[str] = [_log(line, _TIMEOUT)]
    count = ev.count(_TIMEOUT)
    if count > 1:
        evidence.append(f"log: {count} of the last {len(ev.lines)} lines say so")
    return _probable(
        "upstream_timeout",
        f"upstream timeout: {what}",
        0.7,
        evidence,
        f"The upstream is slow or not answering: retry {operation} with exponential backoff and jitter, keep a "
        "deadline on every external call, and watch the upstream itself.",
    )


# --- what the stacks say -------------------------------------------------------------------------------

_ADD_THE_WATCHDOG = "add horus-sdk's LoopWatchdog so that the next hang records the function and line it was stuck in."
# For a service that runs the SDK already: what it writes did not reach Horus, so say how it would.
_LET_HORUS_READ = (
    "let Horus read what horus-sdk (already in this service) writes: give this monitor's heartbeat check the "
    "crash_dir its LoopWatchdog writes to, and send the horus_sdk logger to a log Horus reads, so that the next "
    "post-mortem names the line it was stuck in."
)
_IDLE_FRAMES = frozenset({"select", "poll", "epoll", "kqueue", "_run_once", "run_forever", "run_until_complete"})
# Where a thread waits for an upstream: a socket read, an SSL read, an HTTP response.
_IO_FRAMES = re.compile(
    r"(?:^|\.)(?:readinto|recv|recv_into|recvfrom|read|readline|_read_status|begin|getresponse|connect"
    r"|create_connection|do_handshake|accept|_safe_read|_read_exactly|getaddrinfo)$"
)
# "Thread 4121 (idle): "MainThread"", "(active+gil)", "(active)".
_PY_SPY_THREAD = re.compile(r'^Thread \S+ \((?P<state>[\w+]+)\)(?::\s*"(?P<name>[^"]*)")?')
_PY_SPY_FRAME = re.compile(r"^\s+(?P<function>\S+) \((?P<file>[^()]+):(?P<line>\d+)\)")
_LIBRARY_DIRS = tuple(
    {
        os.path.normpath(path) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)


def _is_library(path: str) -> bool:
    """Whether a frame's file is the standard library's or an installed package's, not the service's code.
    A relative name (py-spy without --full-filenames: ``socket.py``, ``asyncio/base_events.py``) is the
    standard library's when its top-level module is."""
    if not path.startswith((os.sep, "<")) and path.endswith(".py"):
        return path.split(os.sep, 1)[0].removesuffix(".py") in sys.stdlib_module_names
    return (
        "/site-packages/" in path
        or "/dist-packages/" in path
        or path.startswith(("<frozen", "<built-in"))
        or bool(re.search(r"/lib/python\d+(?:\.\d+)?/", path))
        or path.startswith(_LIBRARY_DIRS)
    )


@dataclass(frozen=True)
class _Stack:
    """The main thread as py-spy saw it: its state, the innermost frame, and the innermost frame in the
    service's own code (None when every frame is a library's)."""

    state: str
    innermost: tuple[str, str, str]
    own: tuple[str, str, str] | None
    frames: tuple[tuple[str, str, str], ...] = ()

    def where(self) -> str:
        """``fetch_book at bot.py:42, waiting in SocketIO.readinto (socket.py)``."""
        function, file, line = self.own or self.innermost
        text = f"{function} at {os.path.basename(file)}:{line}"
        if self.own is not None and self.own != self.innermost:
            inner_function, inner_file, _ = self.innermost
            text += f", in {inner_function} ({os.path.basename(inner_file)})"
        return text

    def is_idle_loop(self) -> bool:
        function, file, _ = self.innermost
        return function.rsplit(".", 1)[-1] in _IDLE_FRAMES or file.endswith(("selectors.py", "base_events.py"))

    def under_event_loop(self) -> bool:
        """Whether this thread runs an asyncio event loop: then anywhere but its selector is a blocked loop."""
        return any(
            function.rsplit(".", 1)[-1] in ("_run_once", "run_forever", "run_until_complete", "_run")
            and os.path.basename(file) in ("base_events.py", "events.py", "runners.py")
            for function, file, _ in self.frames
        )

    def is_io_wait(self) -> bool:
        function, file, _ = self.innermost
        return _is_library(file) and bool(_IO_FRAMES.search(function))


def _main_stack(snapshot: Mapping[str, Any]) -> _Stack | None:
    """The main thread (else the first thread with frames) of the first usable py-spy dump.
    py-spy lists each thread's frames innermost first."""
    for dump in (snapshot.get("py_spy") or {}).get("dumps") or []:
        output = dump.get("output") if isinstance(dump, dict) and not dump.get("error") else None
        if not output:
            continue
        threads: list[tuple[str | None, str, list[tuple[str, str, str]]]] = []
        for text in output.splitlines():
            if thread := _PY_SPY_THREAD.match(text):
                threads.append((thread["name"], thread["state"], []))
            elif threads and (frame := _PY_SPY_FRAME.match(text)):
                threads[-1][2].append((frame["function"], frame["file"], frame["line"]))
        with_frames = [t for t in threads if t[2]]
        main = next((t for t in with_frames if t[0] == "MainThread"), with_frames[0] if with_frames else None)
        if main is not None:
            frames = main[2]
            own = next((f for f in frames if not _is_library(f[1])), None)
            return _Stack(main[1], frames[0], own, tuple(frames))
    return None


_TRIP_ADVICE = {
    "failures": (
        "Find why the broker rejected orders or the bot's calls failed (the reasons above), fix that, then "
        "`horus control NAME resume --reason ...`. A restart does not help: the trip holds until resumed."
    ),
    "disconnect": (
        "Find why the broker connection dropped (network, the broker's maintenance, credentials); once it "
        "holds, `horus control NAME resume --reason ...`. A restart does not help: the trip holds until resumed."
    ),
    "daily_loss": (
        "The daily loss limit did its job: review what lost money before the reset time, when the bot resumes "
        "by itself; change the limit only on purpose."
    ),
    "unresolved": (
        "An order was sent and never answered, and looking it up by its client order id found nothing: check it "
        "on the exchange; once its fate is known, `horus control NAME resume --reason ...`. The bot never resends it."
    ),
    "reconcile": (
        "The bot's memory and the broker disagreed when it reconciled (the differences are listed): find why (an "
        "order placed by hand, a fill it missed), then resume; its positions are now the broker's."
    ),
    "status_unreadable": (
        "The bot's previous status.json could not be read at start, so it halted rather than forget a trip: "
        "find what damaged it (a full disk, another writer), then resume."
    ),
}


def trading_trip(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """The bot's own kill switch stopped it (horus-sdk's Control): its status and decision log say which
    trip and why, in the bot's words."""
    for bot in ev.snapshot.get("trading") or []:
        if not isinstance(bot, dict):
            continue
        trip = holding_trip(bot.get("causes"))
        if trip is None:
            continue
        name = str(trip.get("name"))
        evidence = [
            f"snapshot: status.json: trip {name}: {trip.get('reason')}; the bot is {str(bot.get('mode')).upper()}"
        ]
        failures = [d for d in bot.get("decisions") or [] if isinstance(d, dict) and d.get("kind") == "control.failure"]
        said = list(dict.fromkeys((str(d.get("failure")), str(d.get("text"))) for d in failures))[-3:]
        evidence += [f"snapshot: decision log: {kind}: {text}" for kind, text in said]
        broker = bot.get("broker")
        if isinstance(broker, dict) and broker.get("connected") is False:
            evidence.append(f"snapshot: broker disconnected ({broker.get('reason') or 'no reason given'})")
        advice = next((text for key, text in _TRIP_ADVICE.items() if name.startswith(key)), _TRIP_ADVICE["failures"])
        return _probable(
            "trading_trip", f"the bot's kill switch tripped ({name}): {trip.get('reason')}", 0.85, evidence, advice
        )
    return None


def hung_but_running(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """The process runs but its output stopped (or it does not answer): where py-spy saw it, else its CPU.

    A stack says where the service waits, not why: when a rule before this one found the why in the log,
    this one stays quiet (the ranking adds the frame to that cause's evidence)."""
    if failure_kind(ev.check_type, ev.reason) not in _QUIET_KINDS or _said_by_the_service(found):
        return None  # what the service said about itself outranks a guess from outside
    matches = ev.processes()
    if not matches:
        return None
    evidence: list[str] = [f"snapshot: {describe_process_state(ev.snapshot)}", f"check: {_clip(ev.reason)}"]
    if ev.lines:
        evidence.append(Quote(f"log (last line): {_clip(ev.lines[-1])}", ev.lines[-1]))
    deadline_advice = "Put a deadline on every external call (asyncio.wait_for or horus_sdk.deadline), and " + (
        _LET_HORUS_READ if ev.runs_the_sdk() else _ADD_THE_WATCHDOG
    )
    stack = _main_stack(ev.snapshot)
    cpu = _cpu_percent(matches[0])
    spinning = cpu is not None and cpu >= SPINNING_CPU_PERCENT
    if stack is not None:
        evidence.append(f"py-spy: main thread ({stack.state}) in {stack.where()}")
        if _explained(ev, found):
            return None
        # py-spy's "active" is one instant; the CPU sample says whether it keeps running.
        if spinning or (cpu is None and stack.state.startswith("active")):
            return _probable(
                "busy_loop",
                f"busy loop in {stack.where()} (seen by py-spy{f', {cpu:.0f}% CPU' if spinning else ''})",
                0.6 if spinning else 0.5,
                evidence,
                f"{stack.where()} runs without yielding: look for a retry loop without a sleep or a computation "
                "that never ends, and bound it.",
            )
        if stack.under_event_loop() and not stack.is_idle_loop():
            # The loop's own thread is not in its selector: a synchronous call holds the whole loop.
            return _probable(
                "event_loop_blocked",
                f"event loop blocked in {stack.where()} by a synchronous call (seen by py-spy)",
                0.7,
                evidence,
                _unblock(stack.own[0] if stack.own else stack.innermost[0], stack.where(), None),
            )
        if stack.is_idle_loop():
            return _probable(
                "await_never_returned",
                "an await that never returns (the event loop is idle, waiting on I/O, while nothing progresses)",
                0.65,
                evidence,
                deadline_advice,
            )
        if stack.is_io_wait():
            return _probable(
                "await_never_returned",
                f"a call that never returns: {stack.where()} waits on I/O (seen by py-spy)",
                0.7,
                evidence,
                f"{stack.where()} waits for an answer that never comes: give that call a timeout (the client's "
                "own, and horus_sdk.deadline around it) so that it becomes an error the service retries.",
            )
        return _probable(
            "hung",
            f"hung: the process waits in {stack.where()} (seen by py-spy) and nothing it logged says why",
            0.45,
            evidence,
            f"{stack.where()} does not return: give it a deadline, or if it is synchronous, run it off the event "
            "loop (asyncio.to_thread). " + deadline_advice,
        )
    if _explained(ev, found):
        return None
    if spinning:
        return _probable(
            "busy_loop",
            f"busy loop: running at {cpu:.0f}% CPU while its output stopped",
            0.5,
            evidence,
            "Install py-spy so that the next snapshot shows where it spins; look for a retry loop without a sleep.",
        )
    return _probable(
        "hung",
        "hung: the process is running but stopped producing output",
        0.45,
        evidence,
        deadline_advice,
    )


def _cpu_percent(process: Mapping[str, Any]) -> float | None:
    """How busy the process is now: the snapshot's CPU sample (0.2 s). On a loaded machine a spinning
    process gets only its share of a core, so a sample that is merely high counts when the process has
    also used most of a core over its life (a hung process idles now, whatever it did before)."""
    sample = process.get("cpu_percent")
    if not isinstance(sample, int | float):
        return None
    times, age = process.get("cpu_times") or {}, process.get("age_seconds")
    used = sum(float(v) for v in times.values() if isinstance(v, int | float)) if isinstance(times, dict) else 0.0
    lifetime = 100.0 * used / float(age) if isinstance(age, int | float) and age >= 1 else 0.0
    if sample < SPINNING_CPU_PERCENT and sample >= LOADED_SAMPLE_PERCENT and lifetime >= 60:
        return lifetime
    return float(sample)


def _explained(ev: Evidence, found: Sequence[Hypothesis]) -> bool:
    """Whether a rule before found why in what the service wrote: a log line of a known cause that was
    not already there while the service was healthy (routine explains nothing)."""
    return any(
        h.cause not in _SYMPTOMS and any(_line_weight(ev, quote.line)[0] > BASELINE_FACTOR for quote in _quotes(h))
        for h in found
    )


def _quotes(hypothesis: Hypothesis) -> list[Quote]:
    return [e for e in hypothesis.evidence if isinstance(e, Quote) and e.startswith("log: ")]


# --- tracebacks ----------------------------------------------------------------------------------------

_TRACEBACK = "Traceback (most recent call last):"
# A frame line; a SyntaxError's location has no ", in F".
_TRACEBACK_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<function>\S+))?')


@dataclass(frozen=True)
class _Frame:
    text: str
    file: str
    line: str
    function: str | None


@dataclass(frozen=True)
class _Traceback:
    start: int
    frames: tuple[_Frame, ...]
    final: str | None

    def error_site(self) -> _Frame | None:
        """Where the error is: a SyntaxError's location, else the innermost frame in the service's code,
        else the innermost frame."""
        if not self.frames:
            return None
        if self.frames[-1].function is None:
            return self.frames[-1]
        own = [f for f in self.frames if not _is_library(f.file)]
        return own[-1] if own else self.frames[-1]


def _tracebacks(ev: Evidence) -> list[_Traceback]:
    found: list[_Traceback] = []
    starts = [i for i, line in enumerate(ev.lines) if _TRACEBACK in line]
    for position, start in enumerate(starts):
        end = starts[position + 1] if position + 1 < len(starts) else len(ev.lines)
        frames: list[_Frame] = []
        final: str | None = None
        for line in ev.lines[start + 1 : end]:
            if not line.strip():
                continue
            if frame := _TRACEBACK_FRAME.search(line):
                frames.append(_Frame(line, frame["file"], frame["line"], frame["function"]))
                continue
            if line[:1].isspace() or line.strip().startswith("^"):
                continue  # a frame's source line, or a SyntaxError's caret
            final = line
            break
        found.append(_Traceback(start, tuple(frames), final))
    return found


def _traceback_ending_at(ev: Evidence, line: str) -> _Traceback | None:
    return next((t for t in reversed(_tracebacks(ev)) if t.final == line), None)


def unhandled_traceback(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    traces = _tracebacks(ev)
    if not traces:
        return None
    trace = traces[-1]
    if trace.final is None:
        return _probable(
            "unhandled_exception",
            "an unhandled exception (its traceback is cut off)",
            0.4,
            [_log(ev.lines[trace.start])],
            "Log the whole traceback; see the service's log around the incident.",
        )
    if _already_cited(trace.final, found):
        return None  # a specific rule explained this exception already
    exception = trace.final.split(":", 1)[0].strip().rsplit(".", 1)[-1] or "exception"
    exception = exception.split()[-1] if exception.split() else "exception"
    where = ""
    evidence: list[str] = [_log(trace.final)]
    site = trace.error_site()
    if site is not None:
        where = f" at {os.path.basename(site.file)}:{site.line}" + (f" in {site.function}" if site.function else "")
        evidence.append(Quote(f"log: {site.text.strip()}", site.text))
    return _probable(
        "unhandled_exception",
        f"unhandled {exception}{where}",
        0.5,
        evidence,
        f"Handle {exception} where it is raised{where} (retry, skip the bad input, or fail loudly and exit so "
        "the supervisor restarts the service); do not let it stop the loop silently.",
    )


# Other runtimes' crash reports: Go's panic and fatal error, Rust's panic, a JVM's uncaught exception, and a
# JavaScript error with its stack; then the first frame in the service's own code.
_RUNTIME_CRASH = re.compile(
    r"^(?:panic: |fatal error: |thread '[^']*' panicked at |Exception in thread \"[^\"]*\" )(?P<what>.+)"
    r"|^(?P<js>(?:\w+\.)*\w*(?:Error|Exception): .+)$"
)
_FOREIGN_FRAME = re.compile(
    r"^\t(?P<go>/\S+\.go:\d+)|^\s+at (?:[\w$.<>]+ \()?(?P<js>[^()\s]+:\d+):\d+\)?"
    r"|^\s+at [\w$.]+\((?P<java>\w+\.java:\d+)\)"
)


def runtime_crash(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """A crash report of another runtime (Go, Rust, Java, JavaScript), named by its first line and the first
    frame of the service's own code."""
    for index in range(len(ev.lines) - 1, -1, -1):
        line = ev.lines[index]
        match = _RUNTIME_CRASH.search(line)
        if match is None or _already_cited(line, found):
            continue
        frames = [f for text in ev.lines[index + 1 : index + 40] if (f := _FOREIGN_FRAME.search(text))]
        if match["js"] and not any(f["js"] or f["java"] for f in frames[:1]):
            continue  # "SomethingError: ..." without a stack under it is a log line, not a crash
        own = next(
            (
                f
                for f in frames
                if not re.search(r"/usr/(?:local/)?go/src/|/go/pkg/mod/|node:internal|/node_modules/", f.group(0))
            ),
            frames[0] if frames else None,
        )
        where = ""
        evidence: list[str] = [_log(line)]
        if own is not None:
            place = own["go"] or own["js"] or own["java"] or ""
            where = f" at {os.path.basename(place)}"
            evidence.append(Quote(f"log: {own.group(0).strip()}", own.string))
        what = _clip((match["what"] or match["js"] or line).strip())
        return _probable(
            "unhandled_exception",
            f"unhandled crash: {what}{where}",
            0.5,
            evidence,
            f"Fix the crash{where} ({what}): validate the input it trusted, and let the supervisor's restarts back "
            "off so that a crash loop is seen, not hidden.",
        )
    return None


def recent_change(ev: Evidence, found: Sequence[Hypothesis]) -> Hypothesis | None:
    """A commit or config change in the change window that no other rule has cited already."""
    changes = ev.changes()
    if not (changes or ev.config_changed) or _cites_a_change(found):
        return None
    evidence: list[str] = [_cite_commit(c, ev) for c in changes[:COMMITS_CITED]]
    deployed = _deployed(changes[0], ev) if changes else None
    if deployed:
        evidence.append(deployed)
    if ev.config_changed:
        evidence.append(_CONFIG_CHANGED)
    if changes:
        text = f'a recent change (commit {changes[0].short_sha} "{changes[0].subject}")'
        recommendation = f"Review commit {changes[0].short_sha}; roll it back if the failure began with it."
    else:
        text = "a recent change to the config file"
        recommendation = "Review the config change; restore the previous config if the failure began with it."
    brought = _error_brought_by(changes[0], ev, found, deployed=deployed is not None) if changes else None
    if brought is not None:
        # An error in the service's own code that began only once the new code ran: the change is the cause,
        # the exception its symptom (a migration that renamed a table, a field the new code expects).
        evidence.insert(0, brought)
        text += f", which brought {brought.line.strip()[:120]}"
        confidence = 0.6
    elif _explained(ev, found):
        confidence = 0.2  # a logged cause explains the failure better; the change may still be behind it
    elif deployed:
        # The service runs the new code, and nothing it said explains the failure: what changed is the
        # best lead there is.
        confidence = 0.55
    else:
        confidence = 0.3
    return _probable("recent_change", text, confidence, evidence, recommendation)


RULES: tuple[Rule, ...] = (
    trading_trip,
    event_loop_stuck,
    blocked_in_its_log,
    disk_full,
    out_of_memory,
    killed,
    address_in_use,
    import_or_config_error,
    dependency_refused,
    *(_signature_rule(signature) for signature in SIGNATURES),
    upstream_timeout,
    unhandled_traceback,
    runtime_crash,
    hung_but_running,
    recent_change,
)
"""Every rule, in the order they run (specific before general); ties in confidence keep this order."""


# --- the ranking ---------------------------------------------------------------------------------------

_SOURCES = (
    ("log", ("log: ", "log (")),
    ("crash record", ("crash record",)),
    ("stacks", ("py-spy",)),
    ("snapshot", ("snapshot",)),
    ("upstream", ("upstream ",)),
    ("change", ("commit ", "config:")),
    ("check", ("check:",)),
)


_WHY_SOURCES = frozenset({"log", "crash record", "upstream", "change"})
# Causes that name a state rather than a reason: agreement makes them no more certain.
_SYMPTOMS = frozenset({"hung", "busy_loop", "recent_change", "unknown"})


def _source(line: str) -> str | None:
    return next((name for name, prefixes in _SOURCES if line.startswith(prefixes)), None)


def _line_weight(ev: Evidence, line: str) -> tuple[float, bool]:
    """How much one quoted log line counts (baseline and recency), and whether it repeated since the
    failure began."""
    indexes = ev.positions.get(line)
    if not indexes:
        return 1.0, False
    newest = indexes[-1]
    at = ev.times[newest] if newest < len(ev.times) else None
    seen_while_healthy = normalise(line) in ev.routine
    stopped = ev.stopped_at
    if at is not None and stopped is not None:
        gap = max(0.0, stopped - at)
        recency = 1.0 if gap <= RECENT_SECONDS else max(OLDEST_FACTOR, 1.0 - 0.05 * math.log2(gap / RECENT_SECONDS))
    else:
        after = (len(ev.lines) - 1 - newest) / max(1, len(ev.lines))
        recency = 1.0 if after <= 0.25 else 1.0 - (1.0 - OLDEST_FACTOR) * (after - 0.25) / 0.75
    repeated = not seen_while_healthy and len(indexes) >= REPEATED
    return recency * (BASELINE_FACTOR if seen_while_healthy else 1.0), repeated


def _weigh(ev: Evidence, hypothesis: Hypothesis) -> Hypothesis:
    """The hypothesis with its confidence from its prior, the lines it quotes and how many sources agree."""
    quotes = _quotes(hypothesis)
    factor, repeated = 1.0, False
    if quotes:
        weights = [_line_weight(ev, quote.line) for quote in quotes]
        factor = max(weight for weight, _ in weights)
        repeated = any(again for _, again in weights)
    sources = {source for line in hypothesis.evidence if (source := _source(line)) is not None}
    bonus = REPETITION_BONUS if repeated else 0.0
    # Facts about the symptom (the check's reason, a process that runs, a frame) agree with a cause only
    # beside something that says why: a logged line, a crash record, an upstream's state, a change.
    if (sources & _WHY_SOURCES) and not (hypothesis.cause in _SYMPTOMS and not quotes):
        bonus += min(AGREEMENT_MAX, AGREEMENT_BONUS * max(0, len(sources - {"check"}) - 1))
    confidence = round(min(CONFIDENCE_CAP, (hypothesis.confidence + bonus) * factor), 2)
    return dataclasses.replace(hypothesis, title=_labelled(hypothesis.title, confidence), confidence=confidence)


def _with_the_stack(ev: Evidence, ranked: list[Hypothesis]) -> list[Hypothesis]:
    """The frame py-spy saw, as evidence of where the best log-borne cause left the service waiting."""
    stack = _main_stack(ev.snapshot)
    if stack is None:
        return ranked
    for index, hypothesis in enumerate(ranked):
        if _quotes(hypothesis) and not any(line.startswith("py-spy") for line in hypothesis.evidence):
            where = f"py-spy: main thread ({stack.state}) in {stack.where()}"
            ranked[index] = dataclasses.replace(hypothesis, evidence=[*hypothesis.evidence, where])
            break
    return ranked


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
    "unhealthy: connection refused", is); ``commits`` those in the change window.
    Deterministic: the same evidence gives the same answer."""
    lines, written = _log_lines(snapshot, log_tail)
    crash = crash_record if crash_record is not None else snapshot.get("crash")
    evidence = Evidence(
        snapshot=snapshot,
        crash=crash if isinstance(crash, Mapping) and crash else None,
        lines=tuple(redact_line(line.text) for line in lines),
        reason=redact_line(reason),
        check_type=check_type,
        upstreams=dict(upstreams),
        commits=tuple(sorted(commits, key=lambda c: c.at, reverse=True)),
        config_changed=config_changed,
        last_healthy_at=last_healthy_at,
        failing_since=failing_since,
        times=tuple(line.at for line in lines),
        baseline=_baseline(snapshot),
        written=written,
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
    order = {id(h): i for i, h in enumerate(found)}
    weighed = {id(h): _weigh(evidence, h) for h in found}
    ranked = sorted(found, key=lambda h: (-weighed[id(h)].confidence, order[id(h)]))
    ranked = _with_the_stack(evidence, [weighed[id(h)] for h in ranked])
    if not ranked or ranked[0].confidence < UNKNOWN_BELOW:
        ranked.insert(0, _unknown(evidence))
    return ranked


def _log_lines(snapshot: Mapping[str, Any], log_tail: Sequence[str]) -> tuple[list[LogLine], tuple[float | None, ...]]:
    """The lines of every log, each log read on its own (a line without a time takes the time of the line
    before it in its own log, never another's), with when each line's log was last written."""
    if log_tail:
        return read_lines(log_tail), ()
    lines: list[LogLine] = []
    written: list[float | None] = []
    taken = snapshot.get("taken_at")
    for entry in snapshot.get("logs") or []:
        if not isinstance(entry, dict):
            continue
        # What went wrong since the healthy period ended, before the tail, then the tail.
        read = read_lines(str(line) for line in [*(entry.get("since_healthy") or []), *(entry.get("tail") or [])])
        age = entry.get("age_seconds")
        modified = (
            float(taken) - float(age) if isinstance(taken, int | float) and isinstance(age, int | float) else None
        )
        lines += read
        written += [modified] * len(read)
    return lines, tuple(written)


def _baseline(snapshot: Mapping[str, Any]) -> frozenset[str]:
    """The normalised lines each log's snapshot counted while the service was healthy, before its tail."""
    return frozenset(
        str(item["line"])
        for entry in snapshot.get("logs") or []
        if isinstance(entry, dict)
        for item in entry.get("baseline") or []
        if isinstance(item, dict) and item.get("line")
    )


def _unknown(ev: Evidence) -> Hypothesis:
    failing = ev.failing_upstreams()
    sections = [
        key for key in ("processes", "py_spy", "ports", "http", "logs", "heartbeats", "disk") if ev.snapshot.get(key)
    ]
    looked_at = [
        f"check: {_clip(ev.reason)}",
        f"looked at: {len(ev.lines)} log lines; {'a' if ev.crash else 'no'} crash record; "
        f"{len(ev.upstreams)} declared upstreams ({len(failing)} failing); {len(ev.changes())} commits in the "
        f"change window; config {'changed' if ev.config_changed else 'unchanged'}; "
        f"snapshot: {', '.join(sections) or 'nothing'}",
    ]
    facts = describe_process_state(ev.snapshot)
    if not facts.startswith("Not observed"):
        looked_at.append(f"snapshot: {facts}")
    return Hypothesis(UNKNOWN_TITLE, 0.1, looked_at, _what_would_have_told(ev), "unknown")


def _what_would_have_told(ev: Evidence) -> str:
    """What evidence this monitor lacked: the advice of an honest "unknown"."""
    wanted = []
    if not ev.lines:
        wanted.append("name the service's log in this monitor (evidence: {logs: [...]}) so that incidents quote it")
    elif not any(TELLING.search(line) for line in ev.lines):
        wanted.append("make the service log its errors (with the exception) before it stops or retries")
    if not ev.snapshot.get("processes"):
        wanted.append("name its process (evidence: {process_pattern: ...}) so that the snapshot shows its state")
    elif ev.processes() and not ev.snapshot.get("py_spy", {}).get("dumps"):
        wanted.append("install py-spy so that the snapshot shows where a Python service waits")
    if ev.runs_the_sdk():
        wanted.append("put a deadline on every external call (horus_sdk.deadline), and " + _LET_HORUS_READ)
    else:
        wanted.append(
            "instrument the service with horus-sdk (Heartbeat channels, deadline on external calls, LoopWatchdog) "
            "so that the next failure records what it was waiting for and where"
        )
    return "Nothing Horus could read said why. To know next time: " + "; ".join(wanted) + "."


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
