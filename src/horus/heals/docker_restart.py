"""The ``docker_restart`` heal: restart a container, or a service of a Compose project."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from horus.config.types import AbsolutePath
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus.service_managers import ToolArgument, run_heal_tool


class DockerRestartOptions(HealOptions):
    action: Literal["docker_restart"]
    container: ToolArgument | None = None
    compose_file: AbsolutePath | None = None
    service: ToolArgument | None = None
    project_name: ToolArgument | None = None
    stop_timeout_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> DockerRestartOptions:
        if self.container is not None and (self.compose_file is not None or self.service is not None):
            raise ValueError(
                "give either container, or compose_file with service, not both: "
                "they are two ways to name what to restart"
            )
        if self.container is None and self.compose_file is None and self.service is None:
            raise ValueError("say what to restart: container (a name or id), or compose_file and service")
        if self.compose_file is not None and self.service is None:
            raise ValueError("compose_file needs service: the Compose service to restart")
        if self.service is not None and self.compose_file is None:
            raise ValueError("service needs compose_file: the Compose file that defines it")
        if self.project_name is not None and self.compose_file is None:
            raise ValueError("project_name applies only with compose_file and service")
        return self


class DockerRestartHeal(Heal[DockerRestartOptions]):
    """Restart a Docker container, or one service of a Docker Compose project.

    Give ``container`` (a name or id) to run ``docker restart``; or give ``compose_file`` and
    ``service`` (and ``project_name`` if the project was started with ``-p``) to run
    ``docker compose restart``. ``stop_timeout_seconds`` is how long Docker lets the container stop
    gracefully before killing it (Docker's default is 10 s).
    """

    options_model = DockerRestartOptions

    async def run(self, ctx: HealContext) -> HealOutcome:
        opts = self.options
        stop_timeout = [] if opts.stop_timeout_seconds is None else ["-t", str(opts.stop_timeout_seconds)]
        if opts.container is not None:
            return await run_heal_tool(["docker", "restart", *stop_timeout, opts.container])
        # The validator guarantees the Compose form is complete when there is no container.
        assert opts.compose_file is not None
        assert opts.service is not None
        project = [] if opts.project_name is None else ["-p", opts.project_name]
        return await run_heal_tool(
            [
                "docker",
                "compose",
                "-f",
                str(opts.compose_file),
                *project,
                "restart",
                *stop_timeout,
                opts.service,
            ]
        )
