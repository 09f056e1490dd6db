"""The one place heal actions are registered: adding one is its module plus a line here."""

from __future__ import annotations

from horus.heals import (
    docker_restart,
    halt,
    kill_process,
    launchctl_restart,
    run_script,
    runner_restart,
    systemctl_restart,
)
from horus.heals.base import Heal, HealOptions

HEAL_ACTIONS: dict[str, type[Heal]] = {
    heal.action: heal
    for heal in (
        kill_process.KillProcessHeal,
        launchctl_restart.LaunchctlRestartHeal,
        systemctl_restart.SystemctlRestartHeal,
        docker_restart.DockerRestartHeal,
        run_script.RunScriptHeal,
        halt.HaltHeal,
        runner_restart.RunnerRestartHeal,
    )
}

__all__ = ["HEAL_ACTIONS", "build_heal"]


def build_heal(options: HealOptions) -> Heal:
    """A fresh heal instance for one monitor."""
    return HEAL_ACTIONS[options.action](options)
