"""The ``horus`` command line.

Exit status: 0 all good; 1 a monitor is unhealthy (``check``) or the daemon could not start;
2 the config is invalid (nothing was started).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from horus import __version__, cli_control, cli_doctor, cli_ops, cli_runner, cli_service, humanize
from horus.checks.base import CheckOptions, ProbeContext, Status, new_probe_http_client
from horus.checks.heartbeat import HeartbeatOptions
from horus.checks.process_alive import ProcessAliveOptions, wrappers_now
from horus.checks.registry import CHECK_TYPES, build_check
from horus.clock import SystemClock
from horus.config.loader import load_config
from horus.config.models import HorusConfig, MonitorSettings
from horus.engine.daemon import Daemon
from horus.engine.incidents import IncidentTracker
from horus.engine.runner import CheckRun, run_check
from horus.engine.scheduler import DaemonThreadExecutor
from horus.engine.self_watch import SelfWatch
from horus.engine.status import read_status
from horus.errors import CannotStart, ConfigError, EngineCrashed, StoreError
from horus.heals.kill_process import KillProcessOptions, refusal_now
from horus.heals.registry import HEAL_ACTIONS
from horus.log import configure, get_logger
from horus.notify.events import Event, EventKind, Severity
from horus.notify.notifier import Notifier
from horus.notify.worker import deliver_to_every_channel_now
from horus.reports import daemon_state
from horus.store import StateDirLock, StateStore, resolve_state_dir

EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2
# `horus check`'s status for a monitor one look cannot judge; not a failure.
SKIPPED = "skipped"

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file: .json, .yaml/.yml or .toml.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="horus")
def main() -> None:
    """Horus: a self-healing watchdog that makes "alive" mean "working"."""


def _load(path: Path) -> HorusConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)


def _warn_about_patterns(config: HorusConfig) -> None:
    """Warn, on stderr, about process patterns that would misfire on the processes running right now:
    a kill_process heal that would be refused (more than max_matches match, often a restart loop and
    its service), and a process_alive check that also counts a wrapper which outlives its service."""
    for index, monitor in enumerate(config.monitors):
        if not monitor.enabled:
            continue
        where = f"monitors[{index}] ({monitor.name})"
        heals = [("heal", monitor.heal), *((f"escalation[{i}]", h) for i, h in enumerate(monitor.escalation or []))]
        for field, heal in heals:
            if isinstance(heal, KillProcessOptions):
                refusal = refusal_now(heal)
                if refusal is not None:
                    click.echo(f"warning: {where}.{field}: this heal would be refused now: {refusal}", err=True)
        for field, probe in (("check", monitor.check), ("verify", monitor.verify)):
            if isinstance(probe, ProcessAliveOptions):
                note = wrappers_now(probe)
                if note is not None:
                    click.echo(f"warning: {where}.{field}: {note}", err=True)


@main.command()
@config_option
def validate(config_path: Path) -> None:
    """Check a config file and report every error in it at once.

    Also warns (without changing the exit status) when a process pattern matches the processes running
    now badly: a kill_process heal that would be refused, a process_alive check that counts a wrapper.
    """
    config = _load(config_path)
    enabled = sum(m.enabled for m in config.monitors)
    _warn_about_patterns(config)
    click.echo(f"{config_path}: ok ({len(config.monitors)} monitors, {enabled} enabled)")


@main.command()
def schema() -> None:
    """Print the JSON Schema of the config file."""
    click.echo(json.dumps(HorusConfig.model_json_schema(), indent=2))


@main.command(name="types")
@click.argument("name", required=False)
def types_(name: str | None) -> None:
    """List check types and heal actions, or explain one: `horus types kill_process`."""
    plugins: dict[str, type[Any]] = {**CHECK_TYPES, **HEAL_ACTIONS}
    if name is None:
        for title, registry in (("Check types", CHECK_TYPES), ("Heal actions", HEAL_ACTIONS)):
            click.echo(f"{title}:")
            width = max(map(len, registry))
            for key, plugin in registry.items():
                summary = (inspect.getdoc(plugin) or "").splitlines()[0]
                click.echo(f"  {key.ljust(width)}  {summary}")
            click.echo("")
        click.echo("`horus types NAME` explains one, with its options.")
        return
    if name not in plugins:
        click.echo(f"unknown type or action {name!r}; `horus types` lists them", err=True)
        sys.exit(EXIT_CONFIG)
    plugin = plugins[name]
    click.echo(f"{name}\n\n{inspect.getdoc(plugin)}\n\nOptions:")
    schema = plugin.options_model.model_json_schema()
    required = set(schema.get("required", []))
    for key, spec in schema["properties"].items():
        if key in ("type", "action"):
            continue
        if key in required:
            default = "required"
        elif "default" in spec:
            default = f"default {json.dumps(spec['default'])}"
        else:
            default = "optional"
        click.echo(f"  {key}: {_schema_type(spec)} ({default})")


def _schema_type(spec: dict[str, Any]) -> str:
    if "anyOf" in spec:
        return " or ".join(_schema_type(s) for s in spec["anyOf"] if s.get("type") != "null")
    if "enum" in spec:
        return " | ".join(json.dumps(v) for v in spec["enum"])
    if spec.get("type") == "array":
        return f"list of {_schema_type(spec.get('items', {}))}"
    if spec.get("type") == "object":
        return "mapping"
    return str(spec.get("type", "value"))


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per monitor instead of a table.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where a running daemon keeps its state, read for what a one-shot check cannot judge. "
    "Default: the config's state_dir, else $HORUS_STATE_DIR, else ~/.local/state/horus.",
)
def check(config_path: Path, as_json: bool, state_dir: Path | None) -> None:
    """Run every enabled monitor's check once and show the results; exit 1 if any is not healthy.

    Nothing is healed and no state is written: this is safe to run beside a live daemon. A heartbeat
    with ``listen:`` is not probed (the daemon holds its address, and one look cannot judge datagrams
    that arrive over time): it shows the running daemon's last verdict, or ``skipped`` when none runs.
    """
    config = _load(config_path)
    _warn_about_patterns(config)
    monitors = config.monitor_settings()
    listening = {m.name for m in monitors if m.enabled and _listens(m.check)}
    runs = asyncio.run(_check_once([m for m in monitors if m.enabled and m.name not in listening]))
    daemon_rows = _daemon_verdicts(listening, resolve_state_dir(state_dir, config.state_dir)) if listening else {}
    rows = [
        daemon_rows[m.name]
        if m.name in daemon_rows
        else {
            "monitor": m.name,
            "check": m.check.type,
            "status": runs[m.name].result.status.value if m.enabled else "disabled",
            "reason": runs[m.name].result.reason if m.enabled else "",
            "latency_ms": round(runs[m.name].duration_seconds * 1000, 1) if m.enabled else None,
            "details": dict(runs[m.name].result.details) if m.enabled else {},
        }
        for m in monitors
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        click.echo(_table(rows))
    if any(row["status"] in (Status.UNHEALTHY, Status.ERROR) for row in rows):
        sys.exit(EXIT_UNHEALTHY)


def _listens(options: CheckOptions) -> bool:
    return isinstance(options, HeartbeatOptions) and options.listen is not None


def _daemon_verdicts(names: set[str], state_dir: Path) -> dict[str, dict[str, Any]]:
    """Rows for the ``listen:`` heartbeats: the running daemon's last verdict, else ``skipped``."""
    now = time.time()
    try:
        snapshot = read_status(state_dir)
    except (OSError, ValueError, StoreError):  # unreadable: the same as no daemon to ask
        snapshot = None
    state = daemon_state(snapshot, now)
    running = state.startswith("running")
    seen = {m.get("name"): m for m in (snapshot or {}).get("monitors") or [] if isinstance(m, dict)} if running else {}
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        verdict = seen.get(name)
        row: dict[str, Any] = {"monitor": name, "check": "heartbeat", "latency_ms": None, "details": {}}
        if verdict is not None and verdict.get("status") in {s.value for s in Status}:
            when = verdict.get("last_check_at")
            within = verdict.get("checked_within_seconds")
            if isinstance(within, int | float):
                # A healthy row is rewritten only when it changes: the header vouches for how recent it is.
                ago = f"within the last {humanize.duration(within)}"
            elif isinstance(when, int | float):
                ago = f"{humanize.duration(max(0.0, now - when))} ago"
            else:
                ago = "lately"
            row["status"] = verdict["status"]
            pid = (snapshot or {}).get("pid")
            row["reason"] = f"as the running daemon (pid {pid}) saw it {ago}: {verdict.get('reason') or ''}"
            row["details"] = {"source": str(state_dir / "status.json")}
        else:
            row["status"] = SKIPPED
            why = "the running daemon has not judged it yet" if running else f"no daemon is running with {state_dir}"
            row["reason"] = (
                "a one-shot check cannot judge a datagram heartbeat (listen:), which needs beats received over "
                f"time, and {why}; not a failure"
            )
        rows[name] = row
    return rows


async def _check_once(monitors: list[MonitorSettings]) -> dict[str, CheckRun]:
    # A stat stuck on a dead mount must not keep `horus check` from exiting once it has answered.
    asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
    async with new_probe_http_client() as http:
        ctx = ProbeContext(clock=SystemClock(), http=http)

        async def one(m: MonitorSettings) -> CheckRun:
            probe = build_check(m.check)
            await probe.open()
            try:
                return await run_check(probe, ctx, timeout=probe.timeout_seconds(m.check_timeout_seconds))
            finally:
                await probe.aclose()

        results = await asyncio.gather(*(one(m) for m in monitors))
    return {m.name: r for m, r in zip(monitors, results, strict=True)}


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["MONITOR", "CHECK", "STATUS", "LATENCY", "REASON"]
    cells = [
        [
            row["monitor"],
            row["check"],
            row["status"].upper(),
            "" if row["latency_ms"] is None else f"{row['latency_ms']:.0f} ms",
            row["reason"],
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:-1])]
    lines = []
    for line in [headers, *cells]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])
    return "\n".join(line.rstrip() for line in lines)


@main.command(name="notify-test")
@config_option
def notify_test(config_path: Path) -> None:
    """Send a test notification to every channel in the config, right now, and say which ones got it.

    Sent directly, not through the daemon's outbox, each bounded by notify_settings.send_timeout_seconds.
    Exit 1 if any channel failed.
    """
    config = _load(config_path)
    if not config.notify:
        click.echo(f"{config_path}: no notification channels: add a `notify` list to the config", err=True)
        sys.exit(EXIT_CONFIG)
    host = socket.gethostname()
    event = Event(
        EventKind.TEST,
        Severity.INFO,
        "Horus test notification",
        f"A test notification from Horus on {host}. If you read this, this channel works.",
        details={"host": host},
    )
    outcomes = deliver_to_every_channel_now(config.notify, event, config.notify_settings.send_timeout_seconds)
    for name, error in outcomes:
        click.echo(f"ok  {name}" if error is None else f"FAILED {name}: {error}")
    if any(error is not None for _, error in outcomes):
        sys.exit(EXIT_UNHEALTHY)


@main.command()
@config_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where state lives. Default: the config's state_dir, else $HORUS_STATE_DIR, else ~/.local/state/horus.",
)
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="When stopping, write the engine's statistics here as JSON (checks run, schedule lateness).",
)
def run(config_path: Path, state_dir: Path | None, log_format: str, log_level: str, stats_file: Path | None) -> None:
    """Run the daemon: watch every monitor and heal what fails. SIGTERM or SIGINT stops it cleanly;
    SIGHUP reloads the config."""
    config = _load(config_path)
    configure("json" if log_format == "json" else "console", level=log_level)
    log = get_logger("horus")
    directory = resolve_state_dir(state_dir, config.state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = StateDirLock(directory)
        lock.acquire()
    except (OSError, StoreError) as exc:
        log.error("horus.cannot_start", error=str(exc))
        sys.exit(EXIT_UNHEALTHY)
    try:
        # Checked first: a damaged file is moved aside (the daemon then says so and keeps every cooldown).
        store = StateStore.open(directory, check=True)
    except StoreError as exc:
        log.error("horus.cannot_start", error=str(exc))
        lock.release()
        sys.exit(EXIT_UNHEALTHY)
    try:
        clock = SystemClock()
        daemon = Daemon(
            config.monitor_settings(),
            store,
            clock=clock,
            notifier=Notifier(directory, config.notify, config.notify_settings, clock=clock),
            incidents=IncidentTracker(directory, config.sentinel, clock=clock, config_path=config_path),
            reload_config=lambda: load_config(config_path),
        )
        self_watch = SelfWatch(config.self_watch, directory, daemon)
        # The parsed config (a model per monitor) is not needed once the daemon is built: at 10,000
        # monitors, letting it go saves megabytes for the daemon's whole life.
        del config
        try:
            asyncio.run(_serve(daemon, self_watch))
        except EngineCrashed as exc:
            log.critical("horus.exiting", error=str(exc))
            sys.exit(EXIT_UNHEALTHY)
        except CannotStart as exc:
            log.error("horus.cannot_start", error=str(exc))
            sys.exit(EXIT_UNHEALTHY)
        if stats_file is not None:
            daemon.stats.write(stats_file)
    finally:
        store.close()
        lock.release()


async def _serve(daemon: Daemon, self_watch: SelfWatch) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # From the first call on (start-up reads the state dir too): nothing stuck off the loop delays an exit.
    loop.set_default_executor(DaemonThreadExecutor())
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP re-reads the config: monitors added, removed or changed take effect without a restart, and
    # an invalid new config is rejected while the old one keeps running.
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    async with self_watch.watching(stop):
        await daemon.run(stop)


# The operator commands on a daemon's state dir (status, digest, resume) live in their own module.
cli_ops.register(main, _load, config_option)
cli_control.register_control(main, _load, config_option)
cli_runner.register_reload(main, _load, config_option)
cli_service.register_service(main, _load, config_option)
cli_doctor.register_doctor(main, _load, config_option)
