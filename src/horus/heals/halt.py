"""The ``halt`` heal: stop a trading bot from trading, and succeed only when it says it has."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from horus.config.types import AbsolutePath, PositiveSeconds
from horus.control_plane import send_command
from horus.errors import HealError
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome

# The runner's deadline sits past the wait for the acknowledgement, so the heal reports "no
# acknowledgement" in its own words rather than being abandoned by the runner.
RUNNER_MARGIN_SECONDS = 5.0


class HaltOptions(HealOptions):
    action: Literal["halt"]
    control_dir: AbsolutePath
    # "reduce": the bot may only send orders that reduce its positions (REDUCING), for a fault that makes
    # new exposure dangerous but closing it still possible (a clock ahead of the venue, a stale feed).
    command: Literal["halt", "reduce"] = "halt"
    flatten: bool = False
    ack_timeout_seconds: PositiveSeconds = 10.0
    expires_in_seconds: PositiveSeconds | None = Field(default=None)

    @model_validator(mode="after")
    def _flatten_halts(self) -> Self:
        if self.flatten and self.command == "reduce":
            raise ValueError("flatten: true ends HALTED, so it cannot go with command: reduce; choose one")
        return self


class HaltHeal(Heal[HaltOptions]):
    """Write HALTED (or, with ``flatten: true``, flatten then HALTED; or, with ``command: reduce``, REDUCING:
    only orders that reduce its positions) to the bot's ``control_dir/control.json``
    and wait up to ``ack_timeout_seconds`` (default 10) for horus-sdk's ``Control`` to acknowledge it in
    ``status.json``. It succeeds only on the acknowledgement, which says the bot's order gate is closed:
    ``Control`` reads commands on a thread of its own, so even a bot whose loop is stuck acknowledges (and
    stays unhealthy, so an ``escalation`` ladder goes on to its next step, such as ``kill_process``). A bot
    that does not answer at all (a dead or frozen process, a control file it cannot read) fails the heal,
    and the ladder goes on too. The command stays in force across restarts of the bot, which comes back
    halted, until ``horus control NAME resume --reason ...``. Its reason is the failing check's.
    ``expires_in_seconds`` (default: never) drops the command if the bot has not read it by then.

    Put it first in ``escalation`` so that a bot that misbehaves stops trading before anything else is done
    to it: the worst case is flat and halted, never trading blind. A plain halt stops the strategy and
    cancels open orders but keeps positions; with ``flatten: true`` they are closed too. A flatten one of the
    bot's own trips started goes on under either. ``command: reduce`` suits a fault under which opening
    positions is dangerous but closing them is still wanted, such as a ``clock`` check whose clock is ahead
    of the venue; like a halt it holds until ``horus control NAME resume --reason ...``.
    """

    options_model = HaltOptions

    def timeout_seconds(self, default: float) -> float:
        return self.options.ack_timeout_seconds + RUNNER_MARGIN_SECONDS

    async def run(self, ctx: HealContext) -> HealOutcome:
        opts = self.options
        command = "flatten" if opts.flatten else opts.command
        reason = f"Horus healed {ctx.monitor}: {ctx.reason}" if ctx.reason else f"Horus healed {ctx.monitor}"
        try:
            ack = await send_command(
                opts.control_dir,
                command,
                reason,
                f"horus (heal of {ctx.monitor})",
                timeout=opts.ack_timeout_seconds,
                expires_in=opts.expires_in_seconds,
            )
        except (OSError, ValueError) as exc:
            raise HealError(f"cannot write the {command} command: {exc}") from exc
        details = {
            "command": command,
            "seq": ack.command.seq,
            "outcome": ack.outcome,
            "waited_seconds": round(ack.waited_seconds, 3),
            "mode": ack.mode,
        }
        if not ack.applied:
            raise HealError(ack.summary(ctx.monitor), permanent=ack.outcome == "refused", details=details)
        return HealOutcome(ok=True, summary=ack.summary(ctx.monitor), details=details)
