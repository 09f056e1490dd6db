"""``horus service install|uninstall|status|failed``: Horus as a launchd job or a systemd service.

``install`` writes the plist or unit (printing what it changed), loads and starts it, and then waits until the
manager says Horus runs. ``--dry-run`` prints every file in full (captured values masked) and every command,
and writes and runs nothing. Exit status: 0 done and running; 1 a step failed or Horus does not run; 2 a usage
error or a config that does not load (then nothing is written).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import click

from horus.config.models import HorusConfig
from horus.host_service import (
    ManagerState,
    Scope,
    ServiceFile,
    ServiceManager,
    ServiceSpec,
    ServiceToolError,
    Step,
    WriteOutcome,
    capture_environment,
    horus_command,
    read_service_file,
    remove_service_file,
    run_tool,
    write_service_files,
)
from horus.host_service_launchd import Launchd
from horus.host_service_systemd import Systemd
from horus.notify.events import Event, EventKind, Severity
from horus.notify.worker import deliver_to_every_channel_now
from horus.store import resolve_state_dir

__all__ = ["register_service"]

EXIT_PROBLEM = 1
EXIT_USAGE = 2
DEFAULT_WAIT_SECONDS = 15.0
# A Horus that cannot start (another one holds the state dir) is "running" for a moment under launchd, which
# has no readiness protocol: it counts as running once it kept the same pid this long.
DEFAULT_SETTLE_SECONDS = 2.0
POLL_SECONDS = 0.2
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


def _default_manager() -> Literal["launchd", "systemd"] | None:
    if sys.platform == "darwin":
        return "launchd"
    if sys.platform.startswith("linux"):
        return "systemd"
    return None


def _manager(manager: str | None, scope: str | None, name: str | None) -> ServiceManager:
    kind = manager or _default_manager()
    if kind is None:
        click.echo(f"no service manager is known for {sys.platform}: name one with --manager", err=True)
        sys.exit(EXIT_USAGE)
    chosen: Scope = "system" if (scope or ("system" if os.geteuid() == 0 else "user")) == "system" else "user"
    home = Path.home()
    if kind == "launchd":
        return Launchd(chosen, name, home)
    return Systemd(chosen, name, home)


def _check_name(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    # The name becomes a file name and an argument of launchctl or systemctl: no "/", no "..", no flag.
    if value is not None and not SERVICE_NAME.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not a service name: 1 to 100 letters, digits and . _ @ -, starting with a letter or digit"
        )
    return value


def _manager_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--user",
            "scope",
            flag_value="user",
            help="The user's own service (LaunchAgent, systemd --user). Default unless run as root.",
        ),
        click.option(
            "--system", "scope", flag_value="system", help="A system service (LaunchDaemon, system unit). Needs root."
        ),
        click.option(
            "--manager",
            type=click.Choice(["launchd", "systemd"]),
            help="Default: launchd on macOS, systemd on Linux.",
        ),
        click.option(
            "--name",
            callback=_check_name,
            help="The launchd label (default dev.horus.daemon) or systemd unit name (default horus).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _shown(step: Step) -> str:
    command = shlex.join(step.argv)
    return f"{command}   ({step.only_if})" if step.only_if else command


def _run_steps(steps: Sequence[Step]) -> None:
    """Run each step in order, saying so; the first that fails stops the rest with a ServiceToolError."""
    for step in steps:
        result = run_tool(step.argv)
        if not result.ok:
            raise ServiceToolError(f"{shlex.join(step.argv)} exited {result.exit_code}: {result.said()}")
        click.echo(f"ran {shlex.join(step.argv)}")


def _wait_until_running(manager: ServiceManager, wait: float, settle: float) -> tuple[ManagerState, bool]:
    """Ask the manager until the service has run with one pid for ``settle`` seconds (then the state and True),
    or ``wait`` has passed, and at least ``settle`` (then the last state and False: a service running now
    under a new pid each time it is asked is being restarted, not running)."""
    deadline = time.monotonic() + max(wait, settle)
    since: tuple[int | None, float] | None = None
    while True:
        state = manager.state()
        now = time.monotonic()
        if state.running:
            if since is None or since[0] != state.pid:
                since = (state.pid, now)
            if now - since[1] >= settle:
                return state, True
        else:
            since = None
        if now >= deadline:
            return state, False
        time.sleep(POLL_SECONDS)


def _diff(old: str, new: str, path: Path) -> str:
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"{path} (before)", f"{path} (now)", lineterm="", n=1
    )
    return "\n".join(f"    {line}" for line in lines)


def _say_environment(spec: ServiceSpec) -> None:
    environment = spec.environment
    click.echo(f"environment captured for the service: {', '.join(environment.captured)}")
    for name in environment.missing:
        click.echo(
            f"warning: the config refers to ${{{name}}} with a default, and {name} is not set now: "
            "the service will use the default; set it and install again to capture it",
            err=True,
        )
    if environment.dropped_path_entries:
        click.echo(
            "warning: left out of the service's PATH, because a service cannot use a relative entry (nor one a "
            f"service file cannot carry): {', '.join(map(repr, environment.dropped_path_entries))}",
            err=True,
        )
    for name in environment.unusable:
        click.echo(
            f"warning: {name} holds a line break, a control character or bytes that are not UTF-8, which a service "
            "file cannot carry: not captured",
            err=True,
        )


def _spec(config_path: Path, config: HorusConfig, state_dir: Path | None, scope: Scope) -> ServiceSpec:
    config_path = Path(os.path.abspath(config_path))
    horus = horus_command()
    argv = [*horus, "run", "-c", str(config_path)]
    if state_dir is not None or config.state_dir is None:
        # Resolved now: the job has neither $HORUS_STATE_DIR nor $XDG_STATE_HOME, so it would not find the state
        # that `horus status` looks at from this shell.
        argv += ["--state-dir", str(Path(os.path.abspath(resolve_state_dir(state_dir, config.state_dir))))]
    environment = capture_environment(config_path.read_text(encoding="utf-8", errors="replace"), os.environ)
    return ServiceSpec(
        scope=scope,
        horus=tuple(horus),
        argv=tuple(argv),
        config_path=config_path,
        working_directory=config_path.parent,
        environment=environment,
        home=Path.home(),
        watchdog_seconds=config.self_watch.systemd_watchdog_seconds,
    )


def register_service(main: click.Group, load: Callable[[Path], HorusConfig], config_option: Any) -> None:
    """Add ``horus service`` to ``main``; ``load`` reads a config or exits 2 with its errors."""

    @main.group()
    def service() -> None:
        """Install Horus as a launchd job or systemd service, remove it, or ask how it runs."""

    @service.command()
    @config_option
    @_manager_options
    @click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Passed to `horus run`.")
    @click.option("--dry-run", is_flag=True, help="Print the files and commands; write and run nothing.")
    @click.option(
        "--wait",
        type=click.FloatRange(min=0, max=600),
        default=DEFAULT_WAIT_SECONDS,
        show_default=True,
        help="How long to wait for the service to run, in seconds.",
    )
    @click.option(
        "--settle",
        type=click.FloatRange(min=0, max=60),
        default=DEFAULT_SETTLE_SECONDS,
        show_default=True,
        help="How long it must keep one pid to count as running, in seconds.",
    )
    def install(
        config_path: Path,
        scope: str | None,
        manager: str | None,
        name: str | None,
        state_dir: Path | None,
        dry_run: bool,
        wait: float,
        settle: float,
    ) -> None:
        """Install Horus as a service running `horus run -c CONFIG`, start it, and check that it runs.

        The PATH and the variables the config refers to as ${VAR} are captured now: a service inherits
        neither from this shell.
        """
        config = load(config_path)
        chosen = _manager(manager, scope, name)
        if chosen.scope == "system" and os.geteuid() != 0 and not dry_run:
            click.echo("a system service is installed by root: run this with sudo, or use --user", err=True)
            sys.exit(EXIT_USAGE)
        spec = _spec(config_path, config, state_dir, chosen.scope)
        try:
            files = chosen.files(spec)
            for file in files:  # what a real install would find there: a dry run stops where it would
                read_service_file(file.path)
            validated = None if dry_run else chosen.validate(files)
        except (ValueError, ServiceToolError) as exc:
            click.echo(f"nothing was written: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        _say_environment(spec)
        for note in chosen.notes(spec):
            click.echo(f"warning: {note}", err=True)
        if dry_run:
            _print_plan(chosen, spec, files)
            return
        click.echo(validated)
        try:
            _install(chosen, spec, files)
        except ServiceToolError as exc:
            click.echo(f"the install stopped: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        except OSError as exc:
            click.echo(f"the install stopped: cannot write {exc.filename}: {exc.strerror}", err=True)
            sys.exit(EXIT_PROBLEM)
        try:
            state, settled = _wait_until_running(chosen, wait, settle)
        except ServiceToolError as exc:
            click.echo(f"cannot tell whether Horus runs: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        if state.running and not settled:
            click.echo(
                f"{chosen.unit_label()} did not keep one pid for {settle:g} s in the {max(wait, settle):g} s "
                f"waited (it is pid {state.pid} now): {chosen.kind} keeps starting it again; {chosen.logs_hint()}",
                err=True,
            )
            sys.exit(EXIT_PROBLEM)
        if not state.running:
            click.echo(
                f"{chosen.unit_label()} is not running {wait:g} s after it was started: {state.detail}; "
                f"{chosen.logs_hint()}",
                err=True,
            )
            sys.exit(EXIT_PROBLEM)
        click.echo(f"{chosen.unit_label()} is running (pid {state.pid}): {state.detail}")

    @service.command()
    @_manager_options
    @click.option("--dry-run", is_flag=True, help="Print the commands and files; run and remove nothing.")
    def uninstall(scope: str | None, manager: str | None, name: str | None, dry_run: bool) -> None:
        """Stop Horus's service, unload it and remove the files `horus service install` wrote.

        Backups (.bak) and logs are left where they are.
        """
        chosen = _manager(manager, scope, name)
        foreign = _not_written_by_horus(chosen)
        if foreign:
            click.echo(
                f"nothing was stopped or removed: {'; '.join(foreign)}. If it is Horus's all the same, stop the "
                "service and remove it yourself; else name Horus's own with --name",
                err=True,
            )
            sys.exit(EXIT_PROBLEM)
        if dry_run:
            for step in chosen.uninstall_commands(None):
                click.echo(f"would run: {_shown(step)}")
            for path in chosen.installed_paths():
                click.echo(f"would remove {path}")
            for step in chosen.after_removal_commands():
                click.echo(f"would run: {_shown(step)}")
            return
        failed = False
        try:
            before = chosen.state()
            for step in chosen.uninstall_commands(before):
                result = run_tool(step.argv)
                if result.ok:
                    click.echo(f"ran {shlex.join(step.argv)}")
                else:
                    failed = True
                    click.echo(f"{shlex.join(step.argv)} exited {result.exit_code}: {result.said()}", err=True)
        except ServiceToolError as exc:
            before = None
            failed = True
            click.echo(f"cannot stop the service: {exc}", err=True)
        removed = []
        for path in chosen.installed_paths():
            try:
                if remove_service_file(path):
                    removed.append(path)
            except OSError as exc:
                failed = True
                click.echo(f"cannot remove {path}: {exc.strerror or exc}", err=True)
        for path in removed:
            click.echo(f"removed {path}")
        if removed:
            try:
                _run_steps(chosen.after_removal_commands())
            except ServiceToolError as exc:
                failed = True
                click.echo(str(exc), err=True)
        if not removed and before is not None and not before.loaded:
            click.echo(f"nothing to uninstall: {chosen.unit_label()} is not loaded and none of its files exist")
        if failed:
            sys.exit(EXIT_PROBLEM)

    @service.command()
    @_manager_options
    def status(scope: str | None, manager: str | None, name: str | None) -> None:
        """Say whether Horus's service is installed, loaded and running (with its pid); exit 1 if it is not
        running."""
        chosen = _manager(manager, scope, name)
        foreign = _not_written_by_horus(chosen)
        present = [path for path in chosen.installed_paths() if path.exists()]
        if foreign:
            click.echo(f"not installed: {'; '.join(foreign)}")
        elif present:
            click.echo(f"installed: {', '.join(map(str, present))}")
        else:
            click.echo(f"not installed: no {chosen.installed_paths()[0]}")
        try:
            state = chosen.state()
        except ServiceToolError as exc:
            click.echo(f"cannot ask {chosen.kind}: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        if state.running:
            click.echo(f"{chosen.unit_label()}: running (pid {state.pid}); {state.detail}")
            return
        loaded = "loaded but not running" if state.loaded else "not loaded"
        click.echo(f"{chosen.unit_label()}: {loaded}; {state.detail}")
        sys.exit(EXIT_PROBLEM)

    @service.command()
    @config_option
    @click.option("--user", "scope", flag_value="user", help="The unit is a user unit (for the journalctl hint).")
    @click.option("--system", "scope", flag_value="system", help="The unit is a system unit.")
    @click.argument("unit")
    def failed(config_path: Path, scope: str | None, unit: str) -> None:
        """Tell the operator, through the config's channels, that Horus's own service UNIT failed.

        The systemd unit's OnFailure= hook runs this. Exit 1 if no channel took the message.
        """
        config = load(config_path)
        host = socket.gethostname()
        journal = f"journalctl {'--user ' if scope == 'user' else ''}-u {unit}"
        event = Event(
            EventKind.HORUS_FAILED,
            Severity.CRITICAL,
            f"Horus itself failed on {host}",
            f"systemd reports that {unit} failed on {host}, so Horus is not watching or healing your services "
            f"until it runs again. Its last words are in `{journal}`.",
            details={"host": host, "unit": unit},
        )
        if not config.notify:
            click.echo(f"{config_path}: no notification channels to tell anyone that {unit} failed", err=True)
            sys.exit(EXIT_PROBLEM)
        outcomes = deliver_to_every_channel_now(config.notify, event, config.notify_settings.send_timeout_seconds)
        for name, error in outcomes:
            click.echo(f"told {name}" if error is None else f"could not tell {name}: {error}")
        if all(error is not None for _, error in outcomes):
            sys.exit(EXIT_PROBLEM)


def _install(manager: ServiceManager, spec: ServiceSpec, files: Sequence[ServiceFile]) -> None:
    for directory in manager.directories(spec):
        directory.mkdir(parents=True, exist_ok=True)
    outcomes = write_service_files(files)
    for file, outcome in zip(files, outcomes, strict=True):
        if outcome.change == "created":
            click.echo(f"wrote {file.path}")
        elif outcome.change == "unchanged":
            click.echo(f"unchanged {file.path}")
        else:
            click.echo(f"replaced {file.path}; the previous version is {outcome.backup}. What changed:")
            click.echo(_diff(manager.masked(outcome.previous or b""), file.shown, file.path))
    before = manager.state()
    try:
        _run_steps(manager.install_commands(before))
    except ServiceToolError as exc:
        raise ServiceToolError(f"{exc}. {_where_it_was_left(manager, outcomes)}") from exc


def _where_it_was_left(manager: ServiceManager, outcomes: Sequence[WriteOutcome]) -> str:
    """After a step failed, whether Horus runs now (a bootout may have stopped the old one) and where the
    files it replaced are, so the operator knows what the half-done install left."""
    try:
        state = manager.state()
    except ServiceToolError as exc:
        now = f"whether Horus runs now cannot be told ({exc})"
    else:
        running = f"Horus is running now (pid {state.pid})"
        now = running if state.running else f"Horus is not running now ({state.detail})"
    backups = [f"the previous {outcome.path.name} is {outcome.backup}" for outcome in outcomes if outcome.backup]
    return "; ".join([now, *backups])


def _not_written_by_horus(manager: ServiceManager) -> list[str]:
    """Why each file at the service's paths that `horus service install` did not write is not to be removed."""
    reasons = []
    for path in manager.installed_paths():
        try:
            content = read_service_file(path)
        except ServiceToolError as exc:
            reasons.append(str(exc))
            continue
        if content is not None and not manager.wrote(content):
            reasons.append(f"{path} was not written by `horus service install`")
    return reasons


def _print_plan(manager: ServiceManager, spec: ServiceSpec, files: Sequence[ServiceFile]) -> None:
    click.echo("dry run: nothing is written and nothing is run.")
    for directory in manager.directories(spec):
        click.echo(f"would create the directory {directory}")
    for file in files:
        verb = "replace" if file.path.exists() else "write"
        click.echo(f"would {verb} {file.path} (captured values shown as ***):")
        click.echo(file.shown.rstrip("\n"))
        click.echo("")
    click.echo(f"would validate it ({manager.validated_with}) and then run:")
    for step in manager.install_commands(None):
        click.echo(f"  {_shown(step)}")
    click.echo(f"and then wait until {manager.unit_label()} runs.")
