"""Horus as a systemd service: a user unit (``--user``) or a system unit (``--system``), and its failure hook.

The unit is ``Type=notify`` with a watchdog, so systemd restarts a Horus that hangs as well as one that exits,
within start limits. When Horus fails for good, ``OnFailure=`` starts ``<name>-notify-failure@<unit>``, a
one-shot unit that runs ``horus service failed`` to send one event through the config's own channels.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from horus.host_service import (
    ManagerState,
    Scope,
    ServiceFile,
    ServiceSpec,
    Step,
    refuse_uncarriable_paths,
    run_tool,
)

__all__ = ["DEFAULT_NAME", "Systemd", "quote_argument", "quote_assignment"]

DEFAULT_NAME = "horus"
RESTART_SECONDS = 5
# Five failed starts within five minutes, and systemd stops trying: the failure hook then tells the operator.
START_LIMIT_INTERVAL_SECONDS = 300
START_LIMIT_BURST = 5
# Horus finishes its heals in progress before it exits; this bounds how long systemd waits for that.
TIMEOUT_STOP_SECONDS = 30
# Sending one event through every channel, each bounded by the config's send timeout.
NOTIFY_TIMEOUT_SECONDS = 120
_ASSIGNMENT = re.compile(r"^(\s*Environment\s*=\s*)(.*)$")
# The first line of every file an install writes: how uninstall tells them from a unit of the same name.
WRITTEN_BY = "# Written by `horus service install`"
_PLAIN_ARGUMENT = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


def quote_argument(argument: str) -> str:
    """One ExecStart= argument: quoted where needed; ``%`` and ``$`` doubled so systemd does not expand them."""
    if _PLAIN_ARGUMENT.fullmatch(argument):
        return argument
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def quote_assignment(name: str, value: str) -> str:
    """One Environment= assignment, double-quoted (systemd unescapes ``\\\\`` and ``\\"`` in it; ``%`` doubled)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


def _specifiers_escaped(text: str) -> str:
    return text.replace("%", "%%")


class Systemd:
    kind = "systemd"
    validated_with = "systemd-analyze verify, where it is installed"

    def __init__(self, scope: Scope, name: str | None, home: Path, environ: dict[str, str] | None = None) -> None:
        self.scope = scope
        self.name = name or DEFAULT_NAME
        self.home = home
        self.environ = environ if environ is not None else dict(os.environ)

    @property
    def unit_name(self) -> str:
        return f"{self.name}.service"

    @property
    def hook_template_name(self) -> str:
        return f"{self.name}-notify-failure@.service"

    def unit_label(self) -> str:
        return self.unit_name

    @property
    def unit_directory(self) -> Path:
        if self.scope == "system":
            return Path("/etc/systemd/system")
        config_home = self.environ.get("XDG_CONFIG_HOME") or str(self.home / ".config")
        return Path(config_home) / "systemd" / "user"

    def systemctl(self, *args: str) -> tuple[str, ...]:
        return ("systemctl", "--user", *args) if self.scope == "user" else ("systemctl", *args)

    def installed_paths(self) -> list[Path]:
        return [self.unit_directory / self.unit_name, self.unit_directory / self.hook_template_name]

    def directories(self, spec: ServiceSpec) -> list[Path]:
        return []  # the journal keeps Horus's output

    def _environment_lines(self, variables: dict[str, str]) -> list[str]:
        return [quote_assignment(name, value) for name, value in variables.items()]

    def render(self, spec: ServiceSpec, variables: dict[str, str]) -> tuple[str, str]:
        """The unit and its failure hook's template, with ``variables`` as their environment."""
        config = str(spec.config_path)
        environment = self._environment_lines(variables)
        after = ["After=network-online.target", "Wants=network-online.target"] if self.scope == "system" else []
        wanted_by = "multi-user.target" if self.scope == "system" else "default.target"
        unit = "\n".join(
            [
                f"{WRITTEN_BY}; `horus service uninstall` removes it.",
                "[Unit]",
                _specifiers_escaped(f"Description=Horus, the self-healing watchdog ({config})"),
                *after,
                f"StartLimitIntervalSec={START_LIMIT_INTERVAL_SECONDS}",
                f"StartLimitBurst={START_LIMIT_BURST}",
                f"OnFailure={self.name}-notify-failure@%n.service",
                "",
                "[Service]",
                # Horus says READY=1 once it watches, and WATCHDOG=1 only while its scheduler makes progress.
                "Type=notify",
                "NotifyAccess=main",
                "ExecStart=" + " ".join(quote_argument(a) for a in spec.argv),
                _specifiers_escaped(f"WorkingDirectory={spec.working_directory}"),
                *environment,
                f"WatchdogSec={spec.watchdog_seconds}",
                "Restart=always",
                f"RestartSec={RESTART_SECONDS}",
                f"TimeoutStopSec={TIMEOUT_STOP_SECONDS}",
                "",
                "[Install]",
                f"WantedBy={wanted_by}",
                "",
            ]
        )
        hook_argv = [*spec.horus, "service", "failed", "-c", config, f"--{self.scope}"]
        hook = "\n".join(
            [
                f"{WRITTEN_BY}: started by OnFailure= when Horus itself fails.",
                "[Unit]",
                "Description=Tell the operator that %i (Horus) failed",
                "",
                "[Service]",
                "Type=oneshot",
                "ExecStart=" + " ".join(quote_argument(a) for a in hook_argv) + " %i",
                _specifiers_escaped(f"WorkingDirectory={spec.working_directory}"),
                *environment,
                f"TimeoutStartSec={NOTIFY_TIMEOUT_SECONDS}",
                "",
            ]
        )
        return unit, hook

    def files(self, spec: ServiceSpec) -> list[ServiceFile]:
        refuse_uncarriable_paths(spec, "systemd unit")
        if "@" in self.name:
            # systemd reads a name up to its first @ as a template's: OnFailure= would start an instance of
            # <name before @>@.service, not this unit's hook, and the operator would never hear of a failure.
            template = self.name.split("@", 1)[0]
            raise ValueError(
                f"a systemd unit named {self.name} is an instance of the template {template}@.service, and its "
                "failure hook would be looked for there; choose a --name without @"
            )
        unit, hook = self.render(spec, spec.environment.variables)
        shown_unit, shown_hook = self.render(spec, spec.environment.masked())
        unit_path, hook_path = self.installed_paths()
        return [
            ServiceFile(unit_path, unit.encode(), shown_unit),
            ServiceFile(hook_path, hook.encode(), shown_hook),
        ]

    def wrote(self, content: bytes) -> bool:
        return content.startswith(WRITTEN_BY.encode())

    def masked(self, content: bytes) -> str:
        lines = []
        for line in content.decode(errors="replace").splitlines():
            assignment = _ASSIGNMENT.match(line)
            if assignment and not assignment.group(2).lstrip('"').startswith("PATH="):
                name = assignment.group(2).lstrip('"').split("=", 1)[0]
                line = f'{assignment.group(1)}"{name}=***"'
            lines.append(line)
        return "\n".join(lines) + "\n"

    def validate(self, files: Sequence[ServiceFile]) -> str:
        analyze = shutil.which("systemd-analyze", path=self.environ.get("PATH"))
        if analyze is None:
            return "not validated with systemd-analyze verify: it is not installed here"
        with tempfile.TemporaryDirectory(prefix="horus-unit-") as scratch:
            # Under their own names, side by side: verify finds the OnFailure= template next to the unit.
            for file in files:
                (Path(scratch) / file.path.name).write_bytes(file.content)
            unit = str(Path(scratch) / self.unit_name)
            # The system manager's view even for a user unit: `--user verify` needs a running user manager,
            # and the directives checked here mean the same in both.
            result = run_tool([analyze, "verify", unit])
            names = {file.path.name for file in files}
            complaints = [
                line.strip()
                for line in (result.stdout + "\n" + result.stderr).splitlines()
                if any(name in line for name in names)
            ]
        if not result.ok or complaints:
            said = " / ".join(complaints) or result.said()
            raise ValueError(
                f"systemd-analyze verify rejected the unit: {said.replace(scratch, str(self.unit_directory))}"
            )
        return "the unit passed systemd-analyze verify"

    def install_commands(self, before: ManagerState | None) -> list[Step]:
        steps = []
        if before is None or before.failed:
            # A unit that hit its start limit refuses to start until its failure is reset.
            steps.append(Step(self.systemctl("reset-failed", self.unit_name), "if the unit has failed"))
        steps.append(Step(self.systemctl("daemon-reload")))
        steps.append(Step(self.systemctl("enable", "--now", self.unit_name)))
        if before is None or before.running:
            # enable --now leaves a running Horus on its old unit and arguments.
            steps.append(Step(self.systemctl("restart", self.unit_name), "if Horus was running already"))
        return steps

    def uninstall_commands(self, before: ManagerState | None) -> list[Step]:
        if before is not None and not before.loaded:
            return []
        return [Step(self.systemctl("disable", "--now", self.unit_name), "if the unit is loaded")]

    def after_removal_commands(self) -> list[Step]:
        return [Step(self.systemctl("daemon-reload"))]

    def state(self) -> ManagerState:
        active = run_tool(self.systemctl("is-active", self.unit_name)).stdout.strip() or "unknown"
        shown = run_tool(self.systemctl("show", self.unit_name, "-p", "LoadState", "-p", "MainPID", "-p", "Result"))
        properties = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
        pid_text = properties.get("MainPID", "")
        pid = int(pid_text) if pid_text.isdigit() and int(pid_text) > 0 else None
        loaded = properties.get("LoadState") == "loaded" or active in ("active", "activating", "deactivating")
        detail = f"systemctl is-active says {active}"
        if properties.get("Result") not in (None, "", "success"):
            detail += f" (result: {properties['Result']})"
        return ManagerState(loaded, active == "active", pid, detail, failed=active == "failed")

    def logs_hint(self) -> str:
        scope = "--user " if self.scope == "user" else ""
        return f"see journalctl {scope}-u {self.unit_name}"

    def notes(self, spec: ServiceSpec) -> list[str]:
        if self.scope != "user":
            return []
        user = getpass.getuser()
        if Path("/var/lib/systemd/linger", user).exists():
            return []
        return [
            f"lingering is off for {user}: systemd stops user services at logout and starts them again only at the "
            f"next login; run `loginctl enable-linger {user}` to keep Horus running"
        ]
