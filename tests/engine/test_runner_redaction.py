"""The runner is where a check's and a heal's words enter Horus: every reason, summary, detail, evidence
and traceback leaves it with its secrets masked, so nothing downstream (log, databases, notifications,
post-mortems, the command line) ever holds them."""

from __future__ import annotations

from typing import Any, Literal

import structlog

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext, Status
from horus.checks.command import MAX_DETAIL_OUTPUT, CommandCheck, CommandOptions
from horus.clock import SystemClock
from horus.engine.runner import collect_evidence, run_check, run_heal, run_inline
from horus.errors import HealError
from horus.execution import OUTPUT_TAIL_BYTES
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus.heals.run_script import RunScriptHeal, RunScriptOptions

SECRETS = ("hunter2", "abc.def", "s3cr3t")


def leaked(value: Any) -> list[str]:
    text = repr(value)
    return [secret for secret in SECRETS if secret in text]


def heal_ctx() -> HealContext:
    return HealContext(clock=SystemClock(), monitor="bot")


class SaysOptions(CheckOptions):
    type: Literal["says"] = "says"


class Says(Check[SaysOptions]):
    """A check that reports, or raises, whatever the service said."""

    options_model = SaysOptions
    inline = True

    def __init__(self, said: CheckResult | Exception) -> None:
        super().__init__(SaysOptions())
        self.said = said

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return self.probe_inline(ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        if isinstance(self.said, Exception):
            raise self.said
        return self.said

    def evidence(self, since_wall: float | None) -> dict[str, Any]:
        return {"crash_record": "/srv/bot/horus-crash-1.json", "crash_summary": "stalled; token=s3cr3t"}


async def test_a_command_check_printing_a_password_is_reported_with_it_masked(probe_ctx):
    script = "echo 'starting'; echo 'connecting to db with password=hunter2 failed'; exit 1"
    check = CommandCheck(CommandOptions(type="command", command=["/bin/sh", "-c", script]))
    run = await run_check(check, probe_ctx, timeout=10)
    assert run.result.status is Status.UNHEALTHY
    assert run.result.reason == "exit 1: connecting to db with password=*** failed"
    assert run.result.details["output_tail"] == "starting\nconnecting to db with password=*** failed\n"
    assert run.result.details["exit_code"] == 1


async def test_inline_results_and_their_nested_details_are_masked_too(probe_ctx):
    said = CheckResult.unhealthy("login failed: Authorization: Bearer abc.def", lines=["x", {"t": "token=s3cr3t"}])
    run = run_inline(Says(said), probe_ctx)
    assert run.result.reason == "login failed: Authorization: Bearer ***"
    assert run.result.details == {"lines": ["x", {"t": "token=***"}]}
    assert run.result.status is Status.UNHEALTHY


async def test_a_probe_that_crashes_with_a_secret_in_its_message_logs_and_reports_it_masked(probe_ctx):
    check = Says(RuntimeError("could not parse 'password=hunter2'"))
    with structlog.testing.capture_logs() as logs:
        inline = run_inline(check, probe_ctx)
        tasked = await run_check(check, probe_ctx, timeout=5)
    for run in (inline, tasked):
        assert run.result.status is Status.ERROR
        assert run.result.reason == "probe crashed: RuntimeError: could not parse 'password=***'"
    crashed = [e for e in logs if e["event"] == "check.crashed"]
    assert len(crashed) == 2
    assert "Traceback" in crashed[0]["exception"] and "password=***" in crashed[0]["exception"]
    assert leaked(logs) == []


async def test_a_failing_heal_script_printing_a_bearer_token_fails_with_it_masked():
    script = "echo 'POST /restart'; echo 'Authorization: Bearer abc.def'; exit 3"
    heal = RunScriptHeal(RunScriptOptions(action="run_script", command=["/bin/sh", "-c", script]))
    outcome = await run_heal(heal, heal_ctx(), timeout=10)
    assert not outcome.ok
    assert outcome.summary.endswith(": Authorization: Bearer ***")
    assert outcome.details["output_tail"] == "POST /restart\nAuthorization: Bearer ***"
    assert outcome.details["exit_code"] == 3


async def test_a_working_heal_and_every_way_a_heal_fails_are_masked():
    class SaysHealOptions(HealOptions):
        action: Literal["says_heal"] = "says_heal"

    class SaysHeal(Heal[SaysHealOptions]):
        options_model = SaysHealOptions

        def __init__(self, said: HealOutcome | Exception) -> None:
            super().__init__(SaysHealOptions())
            self.said = said

        async def run(self, ctx: HealContext) -> HealOutcome:
            if isinstance(self.said, Exception):
                raise self.said
            return self.said

    told = [
        HealOutcome(ok=True, summary="restarted with --password hunter2", details={"said": "api_key=s3cr3t"}),
        HealError("refused by upstream: Authorization: Basic abc.def", details={"body": "token=s3cr3t"}),
        ValueError("bad answer password=hunter2"),
    ]
    with structlog.testing.capture_logs() as logs:
        outcomes = [await run_heal(SaysHeal(said), heal_ctx(), timeout=5) for said in told]
    assert outcomes[0].ok and outcomes[0].summary == "restarted with --password ***"
    assert outcomes[1].summary == "refused by upstream: Authorization: Basic ***"
    assert outcomes[2].summary == "heal crashed: ValueError: bad answer password=***"
    assert leaked(outcomes) == [] and leaked(logs) == []
    assert [e["event"] for e in logs] == ["heal.crashed"]


def test_what_a_service_left_behind_is_collected_masked():
    evidence = collect_evidence(Says(CheckResult.healthy("fine")), None)
    assert evidence == {"crash_record": "/srv/bot/horus-crash-1.json", "crash_summary": "stalled; token=***"}


# Output kept as a tail is cut at a byte count: a cut inside "password=hunter2" would leave "word=hunter2",
# which no longer says it is a password. A tail therefore starts at a whole line.
def _printing_a_secret_cut_at(keep: int) -> list[str]:
    """A command whose last ``keep`` bytes of output start inside ``password=hunter2``."""
    filler = "x" * (keep - len("word=hunter2\n") - 1)
    return ["/bin/sh", "-c", f"printf 'password=hunter2\\n{filler}\\n'; exit 1"]


async def test_a_command_check_whose_output_tail_is_cut_inside_a_secret_keeps_only_whole_lines(probe_ctx):
    check = CommandCheck(CommandOptions(type="command", command=_printing_a_secret_cut_at(MAX_DETAIL_OUTPUT)))
    run = await run_check(check, probe_ctx, timeout=10)
    assert run.result.status is Status.UNHEALTHY
    assert run.result.details["output_tail"].startswith("x"), "the partial line before the cut is left out"
    assert leaked(run.result) == []


async def test_a_heal_script_whose_output_tail_is_cut_inside_a_secret_keeps_only_whole_lines():
    heal = RunScriptHeal(RunScriptOptions(action="run_script", command=_printing_a_secret_cut_at(OUTPUT_TAIL_BYTES)))
    outcome = await run_heal(heal, heal_ctx(), timeout=10)
    assert outcome.details["output_tail"].startswith("x"), "the partial line before the cut is left out"
    assert leaked(outcome) == []
