"""The ``trading`` check: a bot is working when it cycles, is connected, and nothing automatic stopped it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.control_plane import describe_mode
from horus.errors import ProbeError
from horus_sdk.control_files import AUTOMATIC_SOURCES, Mode, holding_trip, read_status, status_path
from horus_sdk.formats import RefusedFileError, boot_id

DEADLINE_MARGIN_SECONDS = 0.05


class TradingOptions(CheckOptions):
    type: Literal["trading"]
    control_dir: AbsolutePath
    max_cycle_age_seconds: PositiveSeconds = 30.0
    max_disconnected_seconds: float = Field(0.0, ge=0, allow_inf_nan=False)
    max_reconciling_seconds: PositiveSeconds = 120.0


class TradingCheck(Check[TradingOptions]):
    """Reads ``status.json`` in ``control_dir``, which horus-sdk's ``Control`` writes, and is unhealthy when:

    - the bot's last cycle (``await control.cycle()``) is older than ``max_cycle_age_seconds`` (default
      30): its loop is stuck or the process is gone, whatever its port and health endpoint say;
    - an automatic trip reduced, flattened or halted it (too many rejects or errors, a long disconnect,
      the daily loss limit): the result names the trip and its reason. A mode the operator or Horus asked
      for (``horus control``, the ``halt`` heal) is not a failure: the result says it, the bot is healthy;
    - a flatten could not close every position (what remains open is named);
    - the broker has been disconnected longer than ``max_disconnected_seconds`` (default 0: at once);
    - ``control.json`` cannot be read by the bot: the kill switch would not be heard;
    - the bot has been RECONCILING (it does not know its true positions yet) longer than
      ``max_reconciling_seconds`` (default 120). Before that it is neither healthy nor failing: a recovery
      after a heal is confirmed only once the restarted bot has reconciled with its broker.

    Each new fact is also an alert for notifications, once: a disconnect, orders rejected since the last
    look, the daily loss limit reached, a trip, a command refused, a change of mode, the cycle going stale.
    The first look after Horus starts only learns the counters. ``horus control NAME halt|reduce|flatten|
    resume --reason ...`` commands the bot through the same directory and waits for its acknowledgement.
    """

    options_model = TradingOptions
    inline = True

    def __init__(self, options: TradingOptions) -> None:
        super().__init__(options)
        self._boot = boot_id()
        self._last: dict[str, Any] | None = None  # the facts of the previous look, for alerts

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return await asyncio.to_thread(self.probe_inline, ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        path = status_path(self.options.control_dir)
        try:
            status = read_status(self.options.control_dir)
        except FileNotFoundError:
            return self._with_alerts(
                CheckResult.unhealthy(f"no {path.name} in {path.parent}: the bot's Control has not started"), {}
            )
        except RefusedFileError as exc:
            # Not the SDK's file: nothing is known of the bot, and a file another user put there must never
            # be a reason to heal it.
            raise ProbeError(f"cannot observe the bot: {exc}") from exc
        except (ValueError, OSError) as exc:
            return self._with_alerts(CheckResult.unhealthy(f"{path.name} unreadable: {exc}"), {})
        return self._with_alerts(self._judge(status, ctx.clock.wall()), status)

    def _judge(self, status: Mapping[str, Any], now_wall: float) -> CheckResult:
        pid = status.get("pid")
        facts: dict[str, Any] = {
            "mode": status.get("mode"),
            "cause": status.get("cause"),
            "applied_seq": status.get("applied_seq"),
            "broker_connected": _broker(status).get("connected"),
            "exposure": status.get("exposure"),
            "reconcile": _dict(status, "reconcile").get("summary"),
        }
        common: dict[str, Any] = {"pid": pid, "instance": f"{pid}:{status.get('started_at')}", "trading": facts}
        age, since = self._cycle_age(status, now_wall)
        facts["last_cycle_age_seconds"] = None if age is None else round(age, 3)
        limit = self.options.max_cycle_age_seconds
        # The flatten runs inside one cycle and may outlast the limit; its own progress is the sign of life
        # then (the status is rewritten after every attempt). What asked for it is judged below all the same.
        flattening = _flattening(status, now_wall, limit)
        if flattening is None and (age is None or age > limit):
            said = "no cycle yet" if status.get("last_cycle_at") is None else "last cycle"
            mode = str(status.get("mode") or "unknown").upper()
            return CheckResult.unhealthy(
                f"{said} {humanize.seconds(since)} ago, limit {humanize.seconds(limit)} (pid {pid}, {mode})",
                condition="stale",
                **common,
            )
        problem = self._problem(status, now_wall)
        if problem is not None:
            condition, reason = problem
            return CheckResult.unhealthy(reason, condition=condition, recheck_in=limit / 2, **common)
        if flattening is not None:
            return CheckResult.healthy(flattening, recheck_in=limit / 2, **common)
        # Under a stricter mode too (a halt written before the restart): a bot that does not know its
        # positions yet has not recovered, whatever it is told to do.
        if status.get("mode") == Mode.RECONCILING or any(
            isinstance(c, dict) and c.get("mode") == Mode.RECONCILING for c in _list(status, "causes")
        ):
            return self._reconciling(status, now_wall, common)
        assert age is not None
        return CheckResult.healthy(
            f"cycling (last {humanize.seconds(age)} ago); {describe_mode(dict(status))}",
            recheck_in=limit - age + DEADLINE_MARGIN_SECONDS,
            **common,
        )

    def _reconciling(self, status: Mapping[str, Any], now_wall: float, common: dict[str, Any]) -> CheckResult:
        """A bot that does not know its true positions yet is neither working nor failing: its recovery is
        not confirmed until it has reconciled with its broker. One that stays so too long is failing."""
        started = status.get("started_at")
        since = max(0.0, now_wall - float(started)) if isinstance(started, int | float) else 0.0
        limit = self.options.max_reconciling_seconds
        if since > limit:
            return CheckResult.unhealthy(
                f"still reconciling with its broker {humanize.seconds(since)} after it started, limit "
                f"{humanize.seconds(limit)}: it sends no order until it knows its positions"
                + (f"; {_dict(status, 'reconcile').get('summary')}" if _dict(status, "reconcile") else ""),
                condition="reconciling",
                **common,
            )
        last = _dict(status, "reconcile")
        why = f"; {last['summary']}" if last.get("complete") is False and last.get("summary") else ""
        return CheckResult.unknown(
            f"reconciling with its broker ({humanize.seconds(since)} since it started): no order until it knows "
            f"its positions{why}",
            recheck_in=min(1.0, limit - since + DEADLINE_MARGIN_SECONDS),
            **common,
        )

    def _cycle_age(self, status: Mapping[str, Any], now_wall: float) -> tuple[float | None, float]:
        """How long ago the bot last cycled (None: never), and the time to report (since its start)."""
        cycled_mono, cycled_wall = status.get("last_cycle_monotonic"), status.get("last_cycle_at")
        same_boot = self._boot is not None and status.get("boot_id") == self._boot
        if same_boot and isinstance(cycled_mono, int | float):
            # The bot's CLOCK_MONOTONIC is the system's: immune to wall clock jumps on this boot.
            age = max(0.0, time.monotonic() - float(cycled_mono))
            return age, age
        if isinstance(cycled_wall, int | float):
            age = max(0.0, now_wall - float(cycled_wall))
            return age, age
        started = status.get("started_at")
        since = max(0.0, now_wall - float(started)) if isinstance(started, int | float) else 0.0
        # Never cycled: judged from its start, so a bot that is still starting has its whole limit.
        return (since if since <= self.options.max_cycle_age_seconds else None), since

    def _problem(self, status: Mapping[str, Any], now_wall: float) -> tuple[str, str] | None:
        if isinstance(error := status.get("control_error"), str) and error:
            return "control_unreadable", f"the bot cannot read its control file, so a halt would not be heard: {error}"
        first = holding_trip(status.get("causes"))
        if first is not None:
            return "trip", (
                f"trip {first.get('name')}: {first.get('reason')}; the bot is {str(status.get('mode')).upper()}. "
                "It stays so until `horus control NAME resume --reason ...`"
            )
        flatten = status.get("flatten")
        if isinstance(flatten, dict) and flatten.get("state") == "incomplete":
            remaining = flatten.get("remaining") or {}
            left = ", ".join(f"{symbol} {quantity}" for symbol, quantity in dict(remaining).items()) or "unknown"
            attempts = flatten.get("attempts")
            return "flatten_incomplete", f"flatten incomplete after {attempts} attempt(s): still open {left}"
        broker = _broker(status)
        if broker.get("connected") is False:
            since = broker.get("since")
            down = max(0.0, now_wall - float(since)) if isinstance(since, int | float) else None
            if down is None or down >= self.options.max_disconnected_seconds:
                how_long = f" for {humanize.seconds(down)}" if down is not None else ""
                why = f": {broker['reason']}" if broker.get("reason") else ""
                return "disconnected", f"broker disconnected{how_long}{why}"
        return None

    def _with_alerts(self, result: CheckResult, status: Mapping[str, Any]) -> CheckResult:
        """The result with the facts that are new since the last look, each once."""
        now = _facts(status, result)
        before, self._last = self._last, now
        if before is None:
            return result  # the first look learns what is already there
        alerts = [*_alerts(before, now)]
        if not alerts:
            return result
        return CheckResult(result.status, result.reason, {**result.details, "alerts": alerts}, result.recheck_in)


def _flattening(status: Mapping[str, Any], now_wall: float, limit: float) -> str | None:
    """A flatten in progress whose last attempt is recent: what to say of it, else None."""
    flatten = _dict(status, "flatten")
    updated = status.get("updated_at")
    if flatten.get("state") != "running" or not isinstance(updated, int | float) or now_wall - updated > limit:
        return None
    return (
        f"flattening (attempt {flatten.get('attempts')}, status {humanize.seconds(max(0.0, now_wall - updated))} old)"
    )


def _broker(status: Mapping[str, Any]) -> dict[str, Any]:
    return _dict(status, "broker")


def _dict(status: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = status.get(key)
    return value if isinstance(value, dict) else {}


def _list(status: Mapping[str, Any], key: str) -> list[Any]:
    value = status.get(key)
    return value if isinstance(value, list) else []


def _facts(status: Mapping[str, Any], result: CheckResult) -> dict[str, Any]:
    counters, causes = _dict(status, "counters"), _list(status, "causes")
    daily, control = _dict(status, "daily_loss"), _dict(status, "control")
    return {
        "pid": status.get("pid"),
        "mode": status.get("mode"),
        "describe": describe_mode(dict(status)) if status else None,
        "connected": _broker(status).get("connected"),
        "broker_reason": _broker(status).get("reason"),
        "rejects": counters.get("rejects") if isinstance(counters.get("rejects"), int) else None,
        "trips": {
            str(c.get("name")): str(c.get("reason"))
            for c in causes
            if isinstance(c, dict) and c.get("source") in AUTOMATIC_SOURCES
        },
        "daily_loss": bool(daily.get("reached")),
        "refused": (control.get("seq"), control.get("reason")) if control.get("outcome") == "refused" else None,
        "stale": result.details.get("condition") == "stale",
        "reason": result.reason,
    }


# How much each alert matters ("info", "warning", "critical", as the notify settings name severities).
ALERT_SEVERITY = {
    "heartbeat_loss": "critical",
    "trip": "critical",
    "daily_loss": "critical",
    "disconnected": "warning",
    "rejects": "warning",
    "refused": "warning",
    "reconnected": "info",
    "mode": "info",
}


def _alerts(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[dict[str, str]]:
    alerts: list[dict[str, str]] = []

    def add(kind: str, message: str) -> None:
        alerts.append({"kind": kind, "message": message, "severity": ALERT_SEVERITY[kind]})

    if now["stale"] and not before["stale"]:
        add("heartbeat_loss", f"the bot stopped cycling: {now['reason']}")
    if now["connected"] is False and before["connected"] is not False:
        why = f": {now['broker_reason']}" if now["broker_reason"] else ""
        add("disconnected", f"the bot lost its broker connection{why}")
    if now["connected"] is True and before["connected"] is False:
        add("reconnected", "the bot is connected to its broker again")
    same_run = now["pid"] == before["pid"]
    rejects, rejects_before = now["rejects"], before["rejects"]
    if same_run and isinstance(rejects, int) and isinstance(rejects_before, int) and rejects > rejects_before:
        add(
            "rejects",
            f"{rejects - rejects_before} order(s) rejected since the last look ({rejects} since the bot started)",
        )
    if now["daily_loss"] and not before["daily_loss"]:
        add("daily_loss", "the daily loss limit was reached: the bot flattens and halts until its reset time")
    for name, reason in now["trips"].items():
        if name not in before["trips"]:
            add("trip", f"trip {name}: {reason}")
    if now["refused"] is not None and now["refused"] != before["refused"]:
        seq, why = now["refused"]
        add("refused", f"the bot refused command seq {seq}: {why}")
    if now["mode"] is not None and before["mode"] is not None and now["mode"] != before["mode"]:
        add("mode", f"the bot is now {now['describe']} (was {str(before['mode']).upper()})")
    return alerts
