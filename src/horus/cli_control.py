"""``horus control NAME halt|reduce|flatten|resume --reason TEXT``: the kill switch, from any shell.

It commands the bot through the control dir of NAME's ``trading`` check (or ``halt`` heal), waits for the
bot's acknowledgement and says what the bot does now. Exit 0 when the bot acknowledged; 1 when it refused
the command or did not answer in time (the command stays written: the bot applies it when it next reads
it, unless it has expired); 2 for a usage error (no such monitor, no control dir, no reason).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from horus.checks.trading import TradingOptions
from horus.config.models import HorusConfig, MonitorConfig, MonitorSettings
from horus.control_plane import operator_name, send_command
from horus.heals.halt import HaltOptions
from horus_sdk.control_files import COMMANDS

__all__ = ["DEFAULT_RESUME_EXPIRY_SECONDS", "control_dir_of", "register_control"]

EXIT_PROBLEM = 1
EXIT_USAGE = 2
# A resume is a judgement that trading is safe *now*: one the bot has not read within ten minutes (it was
# down, or stuck) is dropped rather than applied to a situation nobody looked at. Halts never expire.
DEFAULT_RESUME_EXPIRY_SECONDS = 600.0


def control_dir_of(monitor: MonitorConfig | MonitorSettings) -> Path | None:
    """Where NAME's bot reads its commands: its trading check's (or verify's) control dir, else its halt heal's."""
    for probe in (monitor.check, monitor.verify):
        if isinstance(probe, TradingOptions):
            return probe.control_dir
    for heal in (monitor.heal, *(monitor.escalation or ())):
        if isinstance(heal, HaltOptions):
            return heal.control_dir
    return None


def register_control(main: click.Group, load: Callable[[Path], HorusConfig], config_option: Any) -> None:
    @main.command()
    @config_option
    @click.argument("name")
    @click.argument("command", type=click.Choice(COMMANDS))
    @click.option("--reason", required=True, help="Why: it is shown in the bot's status, decision log and Horus's.")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0.1, max=3600),
        default=10.0,
        show_default=True,
        help="How long to wait for the bot's acknowledgement, in seconds.",
    )
    @click.option(
        "--expires-in",
        type=click.FloatRange(min=1, max=30 * 86400),
        default=None,
        help=f"Drop the command if the bot has not read it by then, in seconds. Default: never; "
        f"{DEFAULT_RESUME_EXPIRY_SECONDS:.0f} for resume.",
    )
    def control(
        config_path: Path, name: str, command: str, reason: str, timeout: float, expires_in: float | None
    ) -> None:
        """Halt, reduce, flatten or resume the trading bot NAME, and wait for it to acknowledge.

        halt: no new orders, open orders cancelled. reduce: only orders that reduce exposure. flatten: close
        every position, then halt. resume: back to normal, which also clears an automatic trip (not a daily
        loss limit before its reset time). Every command needs --reason. The command survives a restart of
        the bot: a halt written while it is down is in force when it starts.
        """
        config = load(config_path)
        monitor = next((m for m in config.monitors if m.name == name), None)
        if monitor is None:
            click.echo(f"{config_path}: no monitor named {name!r}", err=True)
            sys.exit(EXIT_USAGE)
        directory = control_dir_of(monitor)
        if directory is None:
            click.echo(
                f"{config_path}: monitor {name!r} has no control dir: give it a `trading` check "
                "(control_dir: the directory its horus-sdk Control uses)",
                err=True,
            )
            sys.exit(EXIT_USAGE)
        if not reason.strip():
            click.echo("--reason must say why", err=True)
            sys.exit(EXIT_USAGE)
        if not directory.is_dir():
            click.echo(
                f"{name}: the control dir {directory} does not exist; the bot's horus-sdk Control creates it "
                "when it first starts (with the permissions the bot needs), so start the bot once first",
                err=True,
            )
            sys.exit(EXIT_PROBLEM)
        if expires_in is None and command == "resume":
            expires_in = DEFAULT_RESUME_EXPIRY_SECONDS
        try:
            ack = asyncio.run(
                send_command(
                    directory, command, reason, operator_name("horus control"), timeout=timeout, expires_in=expires_in
                )
            )
        except (OSError, ValueError) as exc:
            click.echo(f"{name}: cannot write the command to {directory}: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        if ack.applied:
            click.echo(ack.summary(name))
            return
        click.echo(ack.summary(name), err=True)
        sys.exit(EXIT_PROBLEM)
