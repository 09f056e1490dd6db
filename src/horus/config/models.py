"""The typed shape of a Horus config file.

The ``check`` and ``heal`` fields are unions built from the plugin registries, so adding a check type
touches its own module and the registry, never this file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from horus.checks.base import CheckOptions
from horus.checks.registry import CHECK_TYPES
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.doctor.files import ServiceFiles, fill_service_files
from horus.heals.base import HealOptions
from horus.heals.registry import HEAL_ACTIONS
from horus.notify.config import NotifyList, NotifySettings
from horus.processes import ServiceUser, validate_pattern

__all__ = [
    "Defaults",
    "EvidenceOptions",
    "HealBudget",
    "HorusConfig",
    "MonitorConfig",
    "MonitorSettings",
    "RestartLimit",
    "SelfWatchSettings",
    "SentinelSettings",
]

NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_MONITOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")


def _check_name(name: str) -> str:
    # Names appear in log events, file names and command lines, so they stay plain.
    if not _MONITOR_NAME.fullmatch(name):
        raise ValueError("a name is 1 to 100 letters, digits and . _ : @ -, starting with a letter or digit")
    return name


def _tagged_union(models: list[type[BaseModel]], tag: str) -> Any:
    return Annotated[Union[tuple(models)], Field(discriminator=tag)]  # noqa: UP007


if TYPE_CHECKING:
    AnyCheckOptions = CheckOptions
    AnyHealOptions = HealOptions
else:
    AnyCheckOptions = _tagged_union([c.options_model for c in CHECK_TYPES.values()], "type")
    AnyHealOptions = _tagged_union([h.options_model for h in HEAL_ACTIONS.values()], "action")


class HealBudget(BaseModel):
    """How often one failure pattern may be healed before Horus stops and asks for a human."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Heals without a stable period in between; then the monitor is quarantined (no more heals).
    max_heals: int = Field(5, ge=1, le=1000)
    # Each heal of a streak waits twice as long as the previous (from the cooldown), up to this.
    backoff_max_seconds: PositiveSeconds = 3600.0
    # Healthy this long in a row makes the budget whole again.
    stable_after_seconds: PositiveSeconds = 1800.0
    # A quarantined monitor gets one more try after this long (or at once with `horus resume NAME`).
    retry_in_seconds: PositiveSeconds = 3600.0


class RestartLimit(BaseModel):
    """Restarts Horus did not cause (a new pid or start time, new crash records), counted in a window:
    this many make a restart storm, like systemd's StartLimitBurst within StartLimitIntervalSec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(5, ge=1, le=10_000)
    within_seconds: PositiveSeconds = 300.0


class Defaults(BaseModel):
    """Values every monitor inherits unless it sets its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_seconds: PositiveSeconds = 30.0
    check_timeout_seconds: PositiveSeconds = 10.0
    heal_timeout_seconds: PositiveSeconds = 60.0
    min_failures_to_heal: int = Field(2, ge=1)
    heal_cooldown_seconds: NonNegativeSeconds = 300.0
    startup_grace_seconds: NonNegativeSeconds = 30.0
    # Monitors start at a random offset within this window so that a thousand of them do not probe
    # in the same instant.
    start_jitter_seconds: NonNegativeSeconds = 5.0
    # After a heal, recovery counts as confirmed only if the verify condition holds within this time.
    verify_within_seconds: PositiveSeconds = 300.0
    # A failing monitor must look healthy this long in a row (and at least twice) to count as recovered.
    confirm_recovery_seconds: NonNegativeSeconds = 10.0
    # A failing monitor is looked at again this soon (or at its interval, if shorter), so the threshold is
    # reached in a bounded time whatever the interval.
    recheck_failing_seconds: PositiveSeconds = 5.0
    restart_limit: RestartLimit = RestartLimit()
    budget: HealBudget = HealBudget()


_OVERRIDABLE = tuple(Defaults.model_fields)


class SentinelSettings(BaseModel):
    """Incidents: how long they are kept, and what a snapshot may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Closed incidents older than this, or beyond the newest keep_max, are deleted (post-mortem files stay).
    keep_days: float = Field(180.0, gt=0, allow_inf_nan=False)
    keep_max: int = Field(5000, ge=10)
    # A failure this soon after recovery was confirmed reopens the incident instead of opening a new one;
    # after this long healthy, the incident closes and its post-mortem is written.
    reopen_within_seconds: NonNegativeSeconds = 600.0
    snapshot_max_bytes: int = Field(64 * 1024, ge=4096, le=4 * 1024 * 1024)
    log_lines: int = Field(40, ge=0, le=1000)
    # A `py-spy dump` of a hung Python service's stacks before it is killed, when py-spy is installed.
    py_spy: bool = True
    # Commits and config changes this long before the service was last healthy still count as changes that
    # may have caused its failure: a deploy is committed first and goes live when the service restarts.
    change_window_seconds: NonNegativeSeconds = 3600.0


SYSTEMD_WATCHDOG_MARGIN_SECONDS = 30


class SelfWatchSettings(BaseModel):
    """How Horus watches itself (``horus.engine.self_watch``): horus-sdk's LoopWatchdog ends a Horus whose event
    loop hangs, with a crash record, so that whatever restarts it (launchd's KeepAlive, systemd, a shell loop)
    does; under systemd, WATCHDOG=1 is sent only while the scheduler keeps up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # False: no LoopWatchdog (systemd's notifications are still sent when NOTIFY_SOCKET is set).
    enabled: bool = True
    # A blocked loop this long is logged with its stack; this long, Horus is ended with a crash record.
    warn_after_seconds: PositiveSeconds = 10.0
    kill_after_seconds: PositiveSeconds = 60.0
    # Between the SIGTERM that asks a hung Horus to stop and the SIGKILL that ends it.
    kill_grace_seconds: NonNegativeSeconds = 5.0
    # Where the crash records go; default: <state_dir>/crashes.
    crash_dir: AbsolutePath | None = None
    # A scheduler this far behind its earliest due check is not making progress: systemd's watchdog is no
    # longer fed, and the LoopWatchdog ends Horus once it is kill_after_seconds behind.
    max_behind_seconds: PositiveSeconds = 30.0

    @property
    def systemd_watchdog_seconds(self) -> int:
        """systemd's WatchdogSec for Horus: longer than the LoopWatchdog's kill and its grace, so that a hung
        Horus is ended by its own watchdog first, with a crash record that says where it was stuck; systemd is
        the backstop should that watchdog fail too."""
        return math.ceil(self.kill_after_seconds + self.kill_grace_seconds) + SYSTEMD_WATCHDOG_MARGIN_SECONDS

    @model_validator(mode="after")
    def _warning_comes_before_the_kill(self) -> SelfWatchSettings:
        if self.warn_after_seconds > self.kill_after_seconds:
            raise ValueError(
                f"warn_after_seconds ({self.warn_after_seconds:g} s) must not be longer than "
                f"kill_after_seconds ({self.kill_after_seconds:g} s): a hung Horus would be ended before "
                "its stack was ever logged"
            )
        return self


# A service writes a few logs (its own, stderr, an access log); more is a glob gone wrong, and each one costs
# a read of up to 256 KiB in every snapshot.
MAX_EVIDENCE_LOGS = 16


class EvidenceOptions(BaseModel):
    """Where a service leaves evidence, whatever its check type: an incident's snapshot reads its logs,
    describes its process (and dumps its stacks with py-spy) and looks for its newest crash record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The service's own logs, read (their last 256 KiB) into every snapshot beside any log_file of the check.
    logs: list[AbsolutePath] = Field(default_factory=list)
    # Declared before process_pattern so that its validator sees it and can compile the regex.
    regex: bool = False
    # Matched as process_alive and kill_process match: a substring (or re.search) of the full command line.
    process_pattern: str | None = None
    # Whose processes the pattern may name (a name or a uid), by default the user Horus runs as.
    user: ServiceUser | None = None
    # Where horus-sdk's LoopWatchdog writes the service's crash records.
    crash_dir: AbsolutePath | None = None

    @field_validator("logs")
    @classmethod
    def _few_logs(cls, value: list[Path]) -> list[Path]:
        if len(value) > MAX_EVIDENCE_LOGS:
            raise ValueError(f"at most {MAX_EVIDENCE_LOGS} logs, got {len(value)}")
        return value

    @field_validator("process_pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else validate_pattern(value, regex=info.data.get("regex", False))

    @model_validator(mode="after")
    def _names_something(self) -> EvidenceOptions:
        if self.process_pattern is None and {"user", "regex"} & self.model_fields_set:
            raise ValueError("user and regex say how process_pattern matches: set process_pattern too")
        if not self.logs and self.process_pattern is None and self.crash_dir is None:
            raise ValueError("names no evidence: give logs, process_pattern or crash_dir")
        return self


class MonitorConfig(BaseModel):
    """One watched service: how to check it and, optionally, how to heal it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, AfterValidator(_check_name)]
    enabled: bool = True
    interval_seconds: PositiveSeconds | None = None
    check_timeout_seconds: PositiveSeconds | None = None
    heal_timeout_seconds: PositiveSeconds | None = None
    min_failures_to_heal: int | None = Field(None, ge=1)
    heal_cooldown_seconds: NonNegativeSeconds | None = None
    startup_grace_seconds: NonNegativeSeconds | None = None
    start_jitter_seconds: NonNegativeSeconds | None = None
    verify_within_seconds: PositiveSeconds | None = None
    confirm_recovery_seconds: NonNegativeSeconds | None = None
    recheck_failing_seconds: PositiveSeconds | None = None
    restart_limit: RestartLimit | None = None
    budget: HealBudget | None = None
    check: AnyCheckOptions
    heal: AnyHealOptions | None = None
    # An escalation ladder instead of one heal: each heal of a streak takes the next step (the last repeats),
    # for example SIGTERM, then SIGKILL, then a script.
    escalation: list[AnyHealOptions] | None = Field(None, min_length=1)
    # After a heal, recovery is confirmed when this check passes within verify_within_seconds (an
    # artifact_growth block: output resumed); by default, when the monitor's own check passes.
    verify: AnyCheckOptions | None = None
    # Monitors this service needs. While one of them fails, this one is a symptom: not healed, re-checked
    # as soon as the upstream recovers.
    depends_on: list[str] = Field(default_factory=list)
    # The service's git work tree, so an incident can name the commits made since it was last healthy.
    work_tree: AbsolutePath | None = None
    # Where the service leaves evidence (logs, its process, crash records) that its check does not name.
    evidence: EvidenceOptions | None = None
    # The state dir of the runner (horus_sdk.runner) the service runs under: Horus takes its exact pids
    # from it, `horus reload NAME` and the runner heals go through it, and status shows its versions.
    runner: AbsolutePath | None = None
    # Where the service's source, .env, compose file, plist or unit are, for `horus doctor` and the doctor
    # check; filled from work_tree and the launchd or systemd check and heal (see horus.doctor.files).
    service: ServiceFiles | None = None

    @model_validator(mode="before")
    @classmethod
    def _service_files_from_monitor(cls, data: Any) -> Any:
        return fill_service_files(data)

    @model_validator(mode="before")
    @classmethod
    def _runner_dir_from_monitor(cls, data: Any) -> Any:
        """A runner check or heal without a dir of its own follows the monitor's runner."""
        if not isinstance(data, Mapping) or data.get("runner") is None:
            return data

        def filled(block: Any) -> Any:
            if isinstance(block, Mapping) and _follows_runner(block) and block.get("dir") is None:
                return {**block, "dir": data["runner"]}
            return block

        out = dict(data)
        for key in ("check", "verify", "heal"):
            if key in out:
                out[key] = filled(out[key])
        if isinstance(out.get("escalation"), list):
            out["escalation"] = [filled(block) for block in out["escalation"]]
        return out

    @model_validator(mode="after")
    def _one_way_to_heal(self) -> MonitorConfig:
        if self.heal is not None and self.escalation is not None:
            raise ValueError("set heal (one action) or escalation (a ladder of actions), not both")
        if self.name in self.depends_on:
            raise ValueError("depends_on names the monitor itself")
        blocks = {"check": self.check, "verify": self.verify, "heal": self.heal}
        blocks.update({f"escalation[{i}]": step for i, step in enumerate(self.escalation or ())})
        missing = [
            where
            for where, block in blocks.items()
            if block is not None and _follows_runner(block) and getattr(block, "dir", None) is None
        ]
        if missing:
            raise ValueError(f"{', '.join(missing)}: needs dir (the runner's state dir), or runner: on the monitor")
        return self


def _follows_runner(block: Any) -> bool:
    """A check or heal that works through the runner's state dir (its ``dir``)."""
    if isinstance(block, Mapping):
        return block.get("type") == "runner" or block.get("action") == "runner_restart"
    return getattr(block, "type", None) == "runner" or getattr(block, "action", None) == "runner_restart"


class HorusConfig(BaseModel):
    """A whole config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: AbsolutePath | None = None
    defaults: Defaults = Defaults()
    monitors: list[MonitorConfig] = Field(min_length=1)
    notify: NotifyList = Field(default_factory=list)
    notify_settings: NotifySettings = NotifySettings()
    sentinel: SentinelSettings = SentinelSettings()
    self_watch: SelfWatchSettings = SelfWatchSettings()

    @model_validator(mode="after")
    def _references_name_real_monitors(self) -> HorusConfig:
        names = {m.name for m in self.monitors}
        problems = []
        for index, channel in enumerate(self.notify):
            unknown = sorted(set(channel.monitors or ()) - names)
            if unknown:
                problems.append(f"notify[{index}].monitors names no such monitor: {', '.join(map(repr, unknown))}")
        for monitor in self.monitors:
            unknown = sorted(set(monitor.depends_on) - names)
            if unknown:
                problems.append(f"{monitor.name}.depends_on names no such monitor: {', '.join(map(repr, unknown))}")
        cycle = _dependency_cycle({m.name: m.depends_on for m in self.monitors})
        if cycle:
            problems.append(f"depends_on makes a cycle: {' -> '.join(cycle)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def monitor_settings(self) -> list[MonitorSettings]:
        """Every monitor with the defaults filled in, in file order."""
        return [MonitorSettings.resolve(m, self.defaults) for m in self.monitors]


def _dependency_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in the depends_on graph, as a path that ends where it starts, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done or name not in graph:
            return None
        visiting.append(name)
        for upstream in graph[name]:
            found = visit(upstream)
            if found:
                return found
        visiting.pop()
        done.add(name)
        return None

    for name in graph:
        found = visit(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class MonitorSettings:
    """A monitor as the engine runs it: every value concrete."""

    name: str
    enabled: bool
    interval_seconds: float
    check_timeout_seconds: float
    heal_timeout_seconds: float
    min_failures_to_heal: int
    heal_cooldown_seconds: float
    startup_grace_seconds: float
    start_jitter_seconds: float
    verify_within_seconds: float
    confirm_recovery_seconds: float
    recheck_failing_seconds: float
    restart_limit: RestartLimit
    budget: HealBudget
    check: CheckOptions
    heal: HealOptions | None  # the first step of the ladder
    escalation: tuple[HealOptions, ...] = ()
    verify: CheckOptions | None = None
    depends_on: tuple[str, ...] = ()
    work_tree: Path | None = None
    evidence: EvidenceOptions | None = None
    runner: Path | None = None

    @classmethod
    def resolve(cls, monitor: MonitorConfig, defaults: Defaults) -> MonitorSettings:
        inherited = {
            key: getattr(monitor, key) if getattr(monitor, key) is not None else getattr(defaults, key)
            for key in _OVERRIDABLE
        }
        ladder = tuple(monitor.escalation) if monitor.escalation else ((monitor.heal,) if monitor.heal else ())
        return cls(
            name=monitor.name,
            enabled=monitor.enabled,
            check=monitor.check,
            heal=ladder[0] if ladder else None,
            escalation=ladder,
            verify=monitor.verify,
            depends_on=tuple(monitor.depends_on),
            work_tree=monitor.work_tree,
            evidence=monitor.evidence,
            runner=monitor.runner,
            **inherited,
        )
