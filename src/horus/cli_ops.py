"""Operator commands that read (or, for ``resume``, nudge) the state dir of a Horus daemon: ``status``,
``digest``, ``resume``, and Sentinel's memory: ``incidents``, ``incident``, ``postmortem``, ``kb search``,
``brief``. They never start monitoring and are safe beside a live daemon."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from horus.cli_runner import runner_status
from horus.config.models import HorusConfig
from horus.engine.status import read_status
from horus.errors import StoreError
from horus.notify.digest import DIGEST_WINDOW_SECONDS, render_digest
from horus.notify.outbox import OUTBOX_NAME, Outbox
from horus.reports import daemon_state, render_status, stale_state_warning
from horus.sentinel.brief import render_brief
from horus.sentinel.postmortem import describe_decision, reconcile_differences
from horus.sentinel.store import DB_NAME as INCIDENTS_NAME
from horus.sentinel.store import Incident, IncidentStateError, SqliteIncidentStore
from horus.store import StateStore, resolve_state_dir
from horus.store.state import DB_NAME

__all__ = ["register"]

EXIT_PROBLEM = 1
EXIT_USAGE = 2

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The daemon's state dir. Default: the config's state_dir, else $HORUS_STATE_DIR, else ~/.local/state/horus.",
)


def register(main: click.Group, load: Callable[[Path], HorusConfig], config_option: Any) -> None:
    """Add the operator commands to ``main``; ``load`` reads a config or exits 2 with its errors."""

    def state_dir_of(config_path: Path, state_dir: Path | None) -> tuple[HorusConfig, Path]:
        config = load(config_path)
        return config, resolve_state_dir(state_dir, config.state_dir)

    register_sentinel(main, state_dir_of, config_option)

    @main.command()
    @config_option
    @state_dir_option
    @click.option("--json", "as_json", is_flag=True, help="Print the snapshot and the outbox's health as JSON.")
    def status(config_path: Path, state_dir: Path | None, as_json: bool) -> None:
        """Each monitor's state, last check, failure count and cooldown as the daemon last saw them, the
        notification outbox's health, and for each monitor with a runner its state, versions, epoch and last
        reload, read from the runner's state dir now. Exit 1 when the daemon is not running, a monitor is failing or a
        channel has been given up on."""
        config, directory = state_dir_of(config_path, state_dir)
        now = time.time()
        try:
            snapshot = read_status(directory, now)
        except StoreError as exc:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_PROBLEM)
        channels = channel_health(directory)
        # Read from each runner's own state dir now, not from the daemon's snapshot: a runner reloads and
        # restarts on its own, and it is worth seeing while no daemon runs.
        runners = {m.name: runner_status(m.runner, now) for m in config.monitors if m.runner is not None}
        if as_json:
            report = {**(snapshot or {}), "channels": channels, "runners": {n: f for n, (_, f) in runners.items()}}
            click.echo(json.dumps(report, indent=2, default=str))
        else:
            click.echo(render_status(snapshot, channels, now))
            if runners:
                click.echo("\nRunners:")
                for name, (line, _facts) in runners.items():
                    click.echo(f"  {name}: {line}")
        running = daemon_state(snapshot, now).startswith("running")
        # A probe that keeps erroring watches nothing ("not watched"): a problem. "unknown" (not known yet) is
        # neither healthy nor failing.
        failing = any(m.get("status") in ("unhealthy", "error") for m in (snapshot or {}).get("monitors", []))
        if not running or failing or any(c.get("given_up") for c in channels):
            sys.exit(EXIT_PROBLEM)

    @main.command()
    @config_option
    @state_dir_option
    def digest(config_path: Path, state_dir: Path | None) -> None:
        """Print the daily digest now: open problems, heals and notification trouble of the last 24 h."""
        _config, directory = state_dir_of(config_path, state_dir)
        now = time.time()
        heals = []
        if (directory / DB_NAME).exists():
            store = _open_store(directory)
            try:
                heals = store.heals(since=now - DIGEST_WINDOW_SECONDS, limit=1000)
            finally:
                store.close()
        snapshot = read_status(directory)
        title, body = render_digest(
            now=now,
            host=socket.gethostname(),
            snapshot=snapshot,
            heals=heals,
            channels=channel_health(directory),
        )
        # Read while no daemon keeps it current, the state can be hours old: say so before anything else.
        warning = stale_state_warning(snapshot, now)
        if warning is not None:
            click.echo(warning)
        click.echo(f"{title}\n\n{body}", nl=False)

    @main.command()
    @config_option
    @state_dir_option
    @click.argument("name")
    def resume(config_path: Path, state_dir: Path | None, name: str) -> None:
        """Lift NAME's quarantine and reset its heal budget; a running daemon acts on it within a second.

        Exit 0 also when NAME is not quarantined (nothing is changed, and it says so); exit 2 when the config
        has no monitor NAME."""
        config, directory = state_dir_of(config_path, state_dir)
        if name not in {m.name for m in config.monitors}:
            click.echo(f"{config_path}: no monitor named {name!r}", err=True)
            sys.exit(EXIT_USAGE)
        # Only a quarantine in the store, or a heal the running daemon refused for good, is lifted: saying
        # "lifted" of a monitor that was never stopped would tell the operator that Horus had given up on it.
        if not (directory / DB_NAME).exists():
            click.echo(f"{name} is not quarantined; nothing to resume")
            return
        try:
            snapshot = read_status(directory)
        except StoreError:
            snapshot = None
        running = daemon_state(snapshot, time.time()).startswith("running")
        row: dict[str, Any] = next((m for m in (snapshot or {}).get("monitors", []) if m.get("name") == name), {})
        blocked = row.get("heal_blocked") if running else None
        store = _open_store(directory)
        try:
            stored = store.load(name)
            quarantined = stored is not None and stored.quarantined_until is not None
            if not quarantined and not blocked:
                click.echo(f"{name} is not quarantined; nothing to resume")
                return
            store.request_resume(name, now=time.time())
        finally:
            store.close()
        where = "the running daemon acts on it within a second" if running else "no daemon is running; it starts fresh"
        if quarantined:
            click.echo(f"resumed {name}: quarantine lifted, heal budget reset ({where})")
        else:
            click.echo(f"resumed {name}: its refused heal will be tried again ({where}); it was refused: {blocked}")


def register_sentinel(
    main: click.Group, state_dir_of: Callable[[Path, Path | None], tuple[HorusConfig, Path]], config_option: Any
) -> None:
    """``incidents``, ``incident``, ``postmortem``, ``kb search`` and ``brief``."""

    @main.command()
    @config_option
    @state_dir_option
    @click.option("--monitor", help="Only this monitor's incidents.")
    @click.option("--limit", default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def incidents(config_path: Path, state_dir: Path | None, monitor: str | None, limit: int, as_json: bool) -> None:
        """The latest incidents, newest first: status, monitor, probable cause, recovery."""
        _config, directory = state_dir_of(config_path, state_dir)
        with _incident_store(directory) as store:
            found = store.incidents(monitor=monitor, limit=limit)
            rows = [
                {
                    **dataclasses.asdict(incident),
                    "prior_matching": store.prior_matching(
                        incident.fingerprint, before=incident.opened_at, exclude_id=incident.id
                    ),
                }
                for incident in found
            ]
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        if not rows:
            click.echo("no incidents")
            return
        for row in rows:
            recovered = {True: "recovered", False: "not recovered", None: ""}[row["recovered"]]
            click.echo(
                f"#{row['id']:<5} {_utc(row['opened_at'])}  {row['status']:<10} {row['monitor']:<20} "
                f"{row['root_cause'] or row['reason']}"
                + (f"  [{recovered}]" if recovered else "")
                + (f"  (seen {row['prior_matching']}x before)" if row["prior_matching"] else "")
            )

    @main.command()
    @config_option
    @state_dir_option
    @click.argument("incident_id", type=int)
    @click.option("--json", "as_json", is_flag=True)
    def incident(config_path: Path, state_dir: Path | None, incident_id: int, as_json: bool) -> None:
        """One incident: its facts, snapshot, heal attempts and whole timeline."""
        _config, directory = state_dir_of(config_path, state_dir)
        with _incident_store(directory) as store:
            found = _get(store, incident_id)
            timeline = store.timeline(incident_id)
            attempts = store.heal_attempts(incident_id)
            snapshots = store.snapshots(incident_id)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "incident": dataclasses.asdict(found),
                        "timeline": [dataclasses.asdict(e) for e in timeline],
                        "heal_attempts": [dataclasses.asdict(a) for a in attempts],
                        "snapshots": [dataclasses.asdict(s) for s in snapshots],
                    },
                    indent=2,
                    default=str,
                )
            )
            return
        click.echo(f"Incident #{found.id}: {found.monitor} ({found.status})")
        click.echo(f"  opened {_utc(found.opened_at)}: {found.reason}")
        click.echo(f"  probable cause: {found.root_cause or 'unknown'}")
        for line in found.root_cause_evidence:
            click.echo(f"    evidence: {line}")
        click.echo(f"  fingerprint {found.fingerprint} (v{found.fingerprint_version})")
        trading = snapshots[0].data.get("trading") if snapshots else None
        for bot in trading if isinstance(trading, list) else []:
            reconciled = bot.get("reconcile") if isinstance(bot, dict) else None
            if isinstance(reconciled, dict) and reconciled.get("summary"):
                click.echo(f"  the bot's last reconcile with its broker: {reconciled['summary']}")
                for line in reconcile_differences(bot):
                    click.echo(f"    difference: {line}")
            if isinstance(bot, dict) and bot.get("decisions"):
                click.echo(f"  the bot's last decisions before the heal ({bot.get('control_dir')}):")
                for record in bot["decisions"]:
                    click.echo(f"    {describe_decision(record)}")
        if found.postmortem_path:
            click.echo(f"  post-mortem: {found.postmortem_path}")
        click.echo("Timeline:")
        for entry in timeline:
            click.echo(f"  {_utc(entry.at)}  {entry.kind:<22} {entry.message}")

    @main.command()
    @config_option
    @state_dir_option
    @click.argument("incident_id", type=int)
    def postmortem(config_path: Path, state_dir: Path | None, incident_id: int) -> None:
        """Print an incident's post-mortem (written when it closed)."""
        _config, directory = state_dir_of(config_path, state_dir)
        with _incident_store(directory) as store:
            found = _get(store, incident_id)
        if not found.postmortem_path:
            click.echo(f"incident {incident_id} is {found.status}: its post-mortem is written when it closes", err=True)
            sys.exit(EXIT_PROBLEM)
        try:
            click.echo(Path(found.postmortem_path).read_text(encoding="utf-8"), nl=False)
        except OSError as exc:
            click.echo(f"cannot read {found.postmortem_path}: {exc.strerror}", err=True)
            sys.exit(EXIT_PROBLEM)

    @main.group()
    def kb() -> None:
        """The knowledge base: every incident and post-mortem, searchable."""

    @kb.command()
    @config_option
    @state_dir_option
    @click.argument("query")
    @click.option("--limit", default=10, show_default=True)
    def search(config_path: Path, state_dir: Path | None, query: str, limit: int) -> None:
        """Ranked full-text search over incidents and post-mortems, e.g. horus kb search "rate limit"."""
        _config, directory = state_dir_of(config_path, state_dir)
        with _incident_store(directory) as store:
            hits = store.search(query, limit=limit)
        if not hits:
            click.echo(f"nothing matches {query!r}")
            sys.exit(EXIT_PROBLEM)
        for hit in hits:
            click.echo(f"#{hit.incident_id:<5} {_utc(hit.opened_at)}  {hit.monitor:<20} {hit.snippet}")

    @main.command()
    @config_option
    @state_dir_option
    @click.argument("service")
    def brief(config_path: Path, state_dir: Path | None, service: str) -> None:
        """A short markdown summary of SERVICE's known failure modes, their recurrence and the standing
        recommendations: to load into a developer's or an assistant's context at the start of work."""
        config, directory = state_dir_of(config_path, state_dir)
        if service not in {m.name for m in config.monitors}:
            click.echo(f"{config_path}: no monitor named {service!r}", err=True)
            sys.exit(EXIT_USAGE)
        with _incident_store(directory) as store:
            click.echo(render_brief(store, service, time.time()), nl=False)


@contextlib.contextmanager
def _incident_store(directory: Path) -> Iterator[SqliteIncidentStore]:
    if not (directory / INCIDENTS_NAME).exists():
        click.echo(f"no incidents recorded in {directory} (has Horus run with this state dir?)", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        store = SqliteIncidentStore.open(directory)
    except StoreError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        yield store
    finally:
        store.close()


def _get(store: SqliteIncidentStore, incident_id: int) -> Incident:
    try:
        return store.get(incident_id)
    except IncidentStateError:
        click.echo(f"no incident #{incident_id}", err=True)
        sys.exit(EXIT_PROBLEM)


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


def channel_health(state_dir: Path) -> list[dict[str, Any]]:
    """The outbox's per-channel health, or [] when no event was ever queued in this state dir."""
    if not (state_dir / OUTBOX_NAME).exists():
        return []
    outbox = Outbox.open(state_dir)
    try:
        return [dataclasses.asdict(health) for health in outbox.health(time.time())]
    finally:
        outbox.close()


def _open_store(directory: Path) -> StateStore:
    try:
        return StateStore.open(directory)
    except StoreError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_PROBLEM)
