"""The one place check types are registered: adding one is its module plus a line here."""

from __future__ import annotations

from horus.checks import (
    artifact_growth,
    clock,
    command,
    docker_container,
    doctor,
    file_exists,
    heartbeat,
    http_health,
    launchd_service,
    log_staleness,
    port_open,
    process_alive,
    runner,
    systemd_service,
    trading,
)
from horus.checks.base import Check, CheckOptions

CHECK_TYPES: dict[str, type[Check]] = {
    check.type: check
    for check in (
        log_staleness.LogStalenessCheck,
        file_exists.FileExistsCheck,
        process_alive.ProcessAliveCheck,
        http_health.HttpHealthCheck,
        port_open.PortOpenCheck,
        launchd_service.LaunchdServiceCheck,
        systemd_service.SystemdServiceCheck,
        docker_container.DockerContainerCheck,
        command.CommandCheck,
        heartbeat.HeartbeatCheck,
        artifact_growth.ArtifactGrowthCheck,
        trading.TradingCheck,
        runner.RunnerCheck,
        doctor.DoctorCheck,
        clock.ClockCheck,
    )
}

__all__ = ["CHECK_TYPES", "build_check"]


def build_check(options: CheckOptions) -> Check:
    """A fresh check instance for one monitor (checks may keep state between probes)."""
    return CHECK_TYPES[options.type](options)
