"""The monitor lifecycle, transition by transition (pure: no clock, no I/O)."""

from __future__ import annotations

import pytest

from horus.checks.base import Status
from horus.config.models import RestartLimit
from horus.engine.lifecycle import Lifecycle, LifeState, Phase, TransitionKind
from horus.engine.policy import HealPolicy, MonitorState
from horus.store.state import HealRecord, Instant

BOOT = "boot-a"


def at(second: float) -> Instant:
    return Instant(wall=1_000_000 + second, mono=second, boot=BOOT)


def lifecycle(**overrides) -> Lifecycle:
    policy = {
        "min_failures_to_heal": 2,
        "heal_cooldown_seconds": 60,
        "startup_grace_seconds": 0,
        "can_heal": True,
        "max_heals": 3,
    }
    policy.update(overrides.pop("policy", {}))
    settings = {
        "policy": HealPolicy(**policy),
        "confirm_seconds": 10,
        "verify_within_seconds": 120,
        "restart_limit": RestartLimit(count=3, within_seconds=60),
    }
    return Lifecycle(**{**settings, **overrides})


class Bot:
    """One monitor's state and life, driven through a lifecycle."""

    def __init__(self, lc: Lifecycle | None = None) -> None:
        self.lc = lc or lifecycle()
        self.state = MonitorState("bot")
        self.life = LifeState("bot")

    def look(self, status: Status, second: float, reason: str = "", **kwargs):
        return self.lc.observe(self.state, self.life, status, reason or status.value, at(second), **kwargs)

    def heal(self, second: float, *, ok: bool = True, refused: bool = False, permanent: bool = False):
        undo = self.lc.policy.before_heal(self.state)
        self.lc.heal_started(self.state, self.life, "kill_process", 0, at(second))
        return self.lc.heal_finished(
            self.state,
            self.life,
            ok=ok,
            refused=refused,
            permanent=permanent,
            summary="done" if ok else "nothing done",
            undo=undo,
            now=at(second + 1),
        )

    def fail_to_threshold(self, start: float = 0):
        self.look(Status.UNHEALTHY, start)
        return self.look(Status.UNHEALTHY, start + 1)

    @property
    def phase(self) -> Phase:
        return self.life.phase


def kinds(step) -> list[TransitionKind]:
    return [t.kind for t in step.transitions]


def test_a_first_healthy_look_makes_an_unknown_monitor_healthy_without_any_recovery():
    bot = Bot()
    step = bot.look(Status.HEALTHY, 0)
    assert bot.phase is Phase.HEALTHY
    assert kinds(step) == []


def test_not_known_yet_neither_heals_nor_recovers_a_failing_monitor():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    for second in range(3, 30):
        step = bot.look(Status.UNKNOWN, second, "watching for 0 ms of a 60 s window")
        assert not step.heal and kinds(step) == []
    assert bot.phase is Phase.VERIFYING


def test_the_first_failure_is_a_failing_transition_and_the_threshold_asks_for_a_heal():
    bot = Bot()
    bot.look(Status.HEALTHY, 0)
    first = bot.look(Status.UNHEALTHY, 1)
    assert kinds(first) == [TransitionKind.FAILING] and bot.phase is Phase.FAILING and not first.heal
    assert bot.look(Status.UNHEALTHY, 2).heal


def test_a_heal_that_acted_moves_to_verifying_and_one_healthy_look_only_starts_the_confirmation():
    bot = Bot()
    bot.fail_to_threshold()
    healed = bot.heal(2)
    assert healed.kind is TransitionKind.HEALED and bot.phase is Phase.VERIFYING
    step = bot.look(Status.HEALTHY, 4)
    assert kinds(step) == [TransitionKind.CONFIRMING] and bot.phase is Phase.CONFIRMING
    assert step.recheck_in == 10, "look again when the confirmation period ends"


def test_recovery_is_confirmed_after_the_confirmation_period_and_credited_to_the_working_heal():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    bot.look(Status.HEALTHY, 4)
    assert kinds(bot.look(Status.HEALTHY, 9)) == [], "5 s healthy is not 10 s"
    step = bot.look(Status.HEALTHY, 14)
    (recovered,) = step.transitions
    assert recovered.kind is TransitionKind.RECOVERED and bot.phase is Phase.HEALTHY
    assert recovered.details["credited"] is True
    assert recovered.details["outcome"] == "recovered after a working heal"
    assert bot.state.failing_since is None


def test_a_failure_during_the_confirmation_breaks_it_and_goes_back_to_verifying():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    bot.look(Status.HEALTHY, 4)
    step = bot.look(Status.UNHEALTHY, 5)
    assert TransitionKind.CONFIRMATION_BROKEN in kinds(step)
    assert bot.phase is Phase.VERIFYING
    assert bot.state.failing_since is not None


def test_a_heal_that_failed_is_never_credited_with_the_recovery():
    bot = Bot()
    bot.fail_to_threshold()
    failed = bot.heal(2, ok=False)
    assert failed.kind is TransitionKind.HEAL_FAILED
    bot.look(Status.HEALTHY, 4)
    (recovered,) = bot.look(Status.HEALTHY, 15).transitions
    assert recovered.details["credited"] is False
    assert recovered.details["outcome"] == "recovered without a working heal"


def test_a_failing_monitor_that_recovers_on_its_own_says_so():
    bot = Bot(lifecycle(policy={"can_heal": False}))
    step = bot.fail_to_threshold()
    assert TransitionKind.THRESHOLD in kinds(step) and step.detect
    bot.look(Status.HEALTHY, 3)
    (recovered,) = bot.look(Status.HEALTHY, 13).transitions
    assert recovered.details["outcome"] == "recovered without a heal"


def test_one_healthy_look_is_never_enough_even_with_no_confirmation_period():
    bot = Bot(lifecycle(confirm_seconds=0))
    bot.fail_to_threshold()
    assert kinds(bot.look(Status.HEALTHY, 3)) == [TransitionKind.CONFIRMING]
    assert kinds(bot.look(Status.HEALTHY, 3.1)) == [TransitionKind.RECOVERED]


def test_a_refused_heal_is_not_a_heal_no_cooldown_no_budget_and_a_permanent_refusal_stops_healing():
    bot = Bot()
    bot.fail_to_threshold()
    refused = bot.heal(2, ok=False, refused=True, permanent=True)
    assert refused.kind is TransitionKind.HEAL_REFUSED
    assert bot.state.last_heal is None and bot.state.heals_in_streak == 0
    assert bot.phase is Phase.FAILING
    step = bot.look(Status.UNHEALTHY, 4)
    assert not step.heal and step.detect
    (waiting,) = step.transitions
    assert waiting.kind is TransitionKind.THRESHOLD
    assert waiting.details["why_not_healed"].startswith("the last heal was refused")
    assert kinds(bot.look(Status.UNHEALTHY, 5)) == [], "announced once, not on every look"


def test_resume_lifts_a_permanent_refusal_and_a_quarantine_and_says_when_there_was_nothing():
    bot = Bot()
    assert bot.lc.resume(bot.state, bot.life, at(0)) is None
    bot.fail_to_threshold()
    bot.heal(2, ok=False, refused=True, permanent=True)
    resumed = bot.lc.resume(bot.state, bot.life, at(3))
    assert resumed is not None and resumed.kind is TransitionKind.RESUMED
    assert bot.look(Status.UNHEALTHY, 4).heal


def test_the_budget_spent_quarantines_and_a_short_healthy_spell_does_not_close_it():
    bot = Bot(lifecycle(policy={"heal_cooldown_seconds": 0, "max_heals": 1}))
    bot.fail_to_threshold()
    bot.heal(2)
    bot.look(Status.UNHEALTHY, 4)
    step = bot.look(Status.UNHEALTHY, 5)
    assert TransitionKind.QUARANTINED in kinds(step) and bot.phase is Phase.QUARANTINED
    bot.look(Status.HEALTHY, 6)  # the port opened for a moment
    assert not Lifecycle.may_close_incident(bot.life)
    bot.look(Status.UNHEALTHY, 7.8)
    assert bot.phase is Phase.QUARANTINED
    assert not Lifecycle.may_close_incident(bot.life)


def test_an_incident_may_close_only_while_the_monitor_is_healthy():
    bot = Bot()
    bot.fail_to_threshold()
    assert not Lifecycle.may_close_incident(bot.life)
    bot.look(Status.HEALTHY, 3)
    assert not Lifecycle.may_close_incident(bot.life)
    bot.look(Status.HEALTHY, 14)
    assert Lifecycle.may_close_incident(bot.life)


def test_a_symptom_is_not_healed_while_its_upstream_fails():
    bot = Bot()
    bot.look(Status.UNHEALTHY, 0, upstream_failing="db")
    step = bot.look(Status.UNHEALTHY, 1, upstream_failing="db")
    assert not step.heal and step.detect and step.upstream == "db"
    assert kinds(step) == [TransitionKind.SYMPTOM] and bot.phase is Phase.SYMPTOM
    assert bot.look(Status.UNHEALTHY, 2).heal, "the upstream is back: heal"


def test_restarts_horus_did_not_cause_are_counted_and_make_a_storm_that_is_not_healed():
    bot = Bot()
    bot.look(Status.HEALTHY, 0)
    assert kinds(bot.look(Status.HEALTHY, 1, restarts=1)) == [TransitionKind.RESTARTED]
    bot.look(Status.HEALTHY, 2, restarts=1)
    step = bot.look(Status.HEALTHY, 3, restarts=1)
    assert kinds(step)[:2] == [TransitionKind.RESTARTED, TransitionKind.RESTART_STORM]
    assert bot.state.last_status is Status.UNHEALTHY, "a storm is a failure, whatever the check says"
    assert bot.state.last_reason.startswith("restart storm: restarted 3 times in 60 s without Horus")
    step = bot.look(Status.HEALTHY, 4)
    assert not step.heal and step.detect, "Horus does not restart a service that restarts itself"


def test_the_restart_a_heal_causes_is_not_counted_against_the_service():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    step = bot.look(Status.HEALTHY, 4, restarts=1)
    assert TransitionKind.RESTARTED not in kinds(step)
    assert TransitionKind.RESTARTED in kinds(bot.look(Status.HEALTHY, 5, restarts=1))


def test_a_restart_while_confirming_starts_the_confirmation_again():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    bot.look(Status.HEALTHY, 4, restarts=1)  # Horus's own restart
    step = bot.look(Status.HEALTHY, 10, restarts=1)  # crashed and came back by itself
    assert TransitionKind.CONFIRMATION_BROKEN in kinds(step)
    assert kinds(bot.look(Status.HEALTHY, 15)) == [], "10 s from the restart, not from the first healthy look"
    assert TransitionKind.RECOVERED in kinds(bot.look(Status.HEALTHY, 21))


def test_the_storm_ends_when_the_restarts_fall_out_of_the_window():
    bot = Bot(lifecycle(policy={"can_heal": False}))
    for second in (0, 1, 2, 3):
        bot.look(Status.HEALTHY, second, restarts=1 if second else 0)
    assert bot.life.storm
    bot.look(Status.HEALTHY, 70)
    assert not bot.life.storm
    assert bot.phase is Phase.CONFIRMING


def test_a_heal_whose_effect_is_not_confirmed_in_time_is_not_recovered_once():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    assert bot.lc.tick(bot.state, bot.life, at(60)) is None
    missed = bot.lc.tick(bot.state, bot.life, at(124))
    assert missed is not None and missed.kind is TransitionKind.NOT_RECOVERED
    assert bot.lc.tick(bot.state, bot.life, at(125)) is None


def test_with_a_verify_check_only_output_confirms_recovery_after_a_heal():
    bot = Bot(lifecycle(has_verify=True))
    bot.fail_to_threshold()
    bot.heal(2)
    bot.look(Status.HEALTHY, 4)
    assert kinds(bot.look(Status.HEALTHY, 30)) == [], "liveness alone does not confirm"
    done = bot.lc.verify_passed(bot.state, bot.life, "27 s", "3 new files", at(31))
    assert done is not None and done.kind is TransitionKind.RECOVERED and done.details["credited"]
    assert done.reason == "output resumed 27 s after the heal: 3 new files"


def test_output_that_resumes_after_a_failed_heal_is_never_said_to_follow_the_heal():
    bot = Bot(lifecycle(has_verify=True))
    bot.fail_to_threshold()
    bot.heal(2, ok=False)
    done = bot.lc.verify_passed(bot.state, bot.life, "27 s", "3 new files", at(31))
    assert done is not None and done.details["outcome"] == "recovered without a working heal"
    assert done.reason == "output resumed 27 s after a heal that failed: 3 new files"


def test_a_restored_failing_monitor_must_prove_its_recovery():
    state = MonitorState("bot", last_status=Status.UNHEALTHY, failing_since=1_000_000.0)
    life = LifeState.restored(state)
    assert life.phase is Phase.FAILING
    lc = lifecycle()
    step = lc.observe(state, life, Status.HEALTHY, "fresh", at(5))
    assert kinds(step) == [TransitionKind.CONFIRMING]


def test_the_verification_deadline_is_on_the_monotonic_clock():
    bot = Bot()
    bot.fail_to_threshold()
    bot.heal(2)
    stepped = Instant(wall=1_000_000 + 3 + 3600, mono=3, boot=BOOT)  # the wall clock leapt an hour
    assert bot.lc.tick(bot.state, bot.life, stepped) is None


def _heal(monitor: str, started: float, *, ok: bool, refused: bool = False) -> HealRecord:
    return HealRecord(
        id=1,
        monitor=monitor,
        action="run_script",
        reason="refused",
        started_at=started,
        finished_at=started + 1,
        ok=ok,
        summary="done",
        details={"refused": True} if refused else {},
    )


@pytest.mark.parametrize(
    ("heals", "outcome"),
    [
        ([], "recovered without a heal"),
        ([_heal("bot", 1_000_010.0, ok=True)], "recovered after a working heal"),
        ([_heal("bot", 1_000_010.0, ok=False)], "recovered without a working heal"),
        # A heal of an earlier episode, a refused one, or another monitor's does not count.
        (
            [_heal("bot", 999_000.0, ok=True), _heal("bot", 1_000_010.0, ok=True, refused=True)],
            "recovered without a heal",
        ),
        ([_heal("other", 1_000_010.0, ok=True)], "recovered without a heal"),
    ],
)
def test_a_heal_logged_in_the_episode_still_counts_after_a_restart(heals, outcome):
    state = MonitorState("bot", last_status=Status.UNHEALTHY, failing_since=1_000_000.0)
    life = LifeState.restored(state, heals)
    lc = lifecycle()
    steps = [lc.observe(state, life, Status.HEALTHY, "fresh", at(second)) for second in (5, 10, 16, 17)]
    [recovered] = [t for step in steps for t in step.transitions if t.kind is TransitionKind.RECOVERED]
    assert recovered.details["outcome"] == outcome
