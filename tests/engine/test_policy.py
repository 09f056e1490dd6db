from __future__ import annotations

import pytest

from horus.checks.base import Status
from horus.engine.policy import HealPolicy, MonitorState
from horus.store.state import Instant, StoredMonitorState

BOOT = "boot-a"


def at(mono: float, wall: float | None = None, boot: str | None = BOOT) -> Instant:
    return Instant(wall=1_000_000 + mono if wall is None else wall, mono=mono, boot=boot)


def policy(**overrides) -> HealPolicy:
    settings = {"min_failures_to_heal": 2, "heal_cooldown_seconds": 180, "startup_grace_seconds": 30, "can_heal": True}
    return HealPolicy(**{**settings, **overrides})


def test_a_heal_runs_only_when_consecutive_failures_reach_the_threshold():
    p, state = policy(min_failures_to_heal=3), MonitorState("bot")
    assert not p.observe(state, Status.UNHEALTHY, "stale", at(0)).heal
    assert not p.observe(state, Status.UNHEALTHY, "stale", at(1)).heal
    verdict = p.observe(state, Status.UNHEALTHY, "stale", at(2))
    assert verdict.heal and verdict.threshold_reached
    assert state.consecutive_failures == 3


def test_a_success_resets_the_count_so_failures_must_be_consecutive():
    p, state = policy(), MonitorState("bot")
    p.observe(state, Status.UNHEALTHY, "stale", at(0))
    p.observe(state, Status.HEALTHY, "fresh", at(1))
    assert state.consecutive_failures == 0
    assert not p.observe(state, Status.UNHEALTHY, "stale", at(2)).heal


def test_a_probe_error_is_never_a_reason_to_heal_and_does_not_touch_the_count():
    p, state = policy(min_failures_to_heal=1), MonitorState("bot")
    for second in range(5):
        verdict = p.observe(state, Status.ERROR, "permission denied", at(second))
        assert not verdict.heal and not verdict.counted
    assert state.consecutive_failures == 0
    assert state.last_status is None


def test_failures_inside_the_startup_grace_after_a_heal_are_not_counted():
    p, state = policy(min_failures_to_heal=1, startup_grace_seconds=30, heal_cooldown_seconds=0), MonitorState("bot")
    assert p.observe(state, Status.UNHEALTHY, "stale", at(0)).heal
    p.heal_started(state, at(0))
    verdict = p.observe(state, Status.UNHEALTHY, "stale", at(29))
    assert verdict.in_grace and not verdict.counted and not verdict.heal
    assert p.observe(state, Status.UNHEALTHY, "stale", at(31)).heal


def test_the_cooldown_holds_back_a_second_heal_and_says_how_long_remains():
    p, state = policy(min_failures_to_heal=1, startup_grace_seconds=0, heal_cooldown_seconds=180), MonitorState("bot")
    p.heal_started(state, at(0))
    verdict = p.observe(state, Status.UNHEALTHY, "stale", at(100))
    assert not verdict.heal
    assert verdict.cooldown_remaining == pytest.approx(80)
    assert p.observe(state, Status.UNHEALTHY, "stale", at(181)).heal


def test_a_monitor_without_a_heal_reaches_its_threshold_but_never_heals():
    p, state = policy(min_failures_to_heal=1, can_heal=False), MonitorState("bot")
    verdict = p.observe(state, Status.UNHEALTHY, "stale", at(0))
    assert verdict.threshold_reached and not verdict.heal


@pytest.mark.parametrize("wall_jump", [+86_400.0, -86_400.0])
def test_a_wall_clock_jump_neither_ends_nor_extends_the_cooldown(wall_jump):
    p, state = policy(min_failures_to_heal=1, startup_grace_seconds=0, heal_cooldown_seconds=180), MonitorState("bot")
    p.heal_started(state, at(0, wall=1_000_000))
    # 60 s later on the monotonic clock, while the wall clock says a day more (or less) has passed.
    assert not p.observe(state, Status.UNHEALTHY, "stale", at(60, wall=1_000_060 + wall_jump)).heal
    assert p.observe(state, Status.UNHEALTHY, "stale", at(181, wall=1_000_181 + wall_jump)).heal


def test_after_a_reboot_the_cooldown_is_measured_on_the_wall_clock():
    stored = StoredMonitorState("bot", 0, "unhealthy", "stale", 1_000_000, None, Instant(1_000_000, 5_000, "old-boot"))
    now = Instant(wall=1_000_100, mono=12.0, boot="new-boot")
    state = MonitorState.restore(stored, now)
    p = policy(min_failures_to_heal=1, startup_grace_seconds=0, heal_cooldown_seconds=180)
    verdict = p.observe(state, Status.UNHEALTHY, "stale", now)
    assert not verdict.heal
    assert verdict.cooldown_remaining == pytest.approx(80)


def test_not_known_yet_changes_nothing_like_a_probe_error():
    p, state = policy(min_failures_to_heal=1), MonitorState("bot")
    p.observe(state, Status.UNHEALTHY, "stale", at(0))
    verdict = p.observe(state, Status.UNKNOWN, "watching for 0 ms of a 60 s window", at(1))
    assert not verdict.heal and not verdict.counted
    assert state.last_status is Status.UNHEALTHY and state.failing_since is not None


def test_the_startup_grace_runs_from_when_the_heal_finished():
    p, state = policy(min_failures_to_heal=1, startup_grace_seconds=30, heal_cooldown_seconds=0), MonitorState("bot")
    p.heal_started(state, at(0))
    # A kill that took 25 s of its grace: the service gets its whole 30 s from the end of the heal.
    verdict = p.observe(state, Status.UNHEALTHY, "stale", at(40), grace_from=at(25))
    assert verdict.in_grace
    assert p.observe(state, Status.UNHEALTHY, "stale", at(56), grace_from=at(25)).heal


def test_a_refused_heal_is_undone_no_cooldown_and_no_budget_spent():
    p, state = policy(min_failures_to_heal=1, startup_grace_seconds=0), MonitorState("bot")
    p.observe(state, Status.UNHEALTHY, "stale", at(0))
    before = p.before_heal(state)
    p.heal_started(state, at(0))
    p.undo_heal(state, before)
    assert state.last_heal is None and state.heals_in_streak == 0
    assert p.observe(state, Status.UNHEALTHY, "stale", at(1)).heal, "no cooldown after a heal that did nothing"


def heal_now(p: HealPolicy, state: MonitorState, moment: Instant):
    """Fail until the verdict says heal (or says why not), then start the heal."""
    verdict = p.observe(state, Status.UNHEALTHY, "stale", moment)
    if verdict.heal:
        p.heal_started(state, moment)
    return verdict


def test_each_heal_of_a_streak_waits_twice_as_long_capped_and_the_ladder_steps_up():
    p = policy(min_failures_to_heal=1, heal_cooldown_seconds=60, startup_grace_seconds=0, backoff_max_seconds=200)
    state = MonitorState("bot")
    assert [p.wait_after_heal(n) for n in (1, 2, 3, 4)] == [60, 120, 200, 200]
    first = heal_now(p, state, at(0))
    assert first.heal and first.step == 0
    assert heal_now(p, state, at(61)).heal, "one heal spent: the second waits the cooldown, 60 s"
    assert state.heals_in_streak == 2
    held = heal_now(p, state, at(61 + 100))
    assert not held.heal and held.cooldown_remaining == pytest.approx(20), "the third heal waits 120 s"
    third = heal_now(p, state, at(61 + 120))
    assert third.heal and third.step == 2


def test_a_spent_budget_quarantines_then_retries_once_after_retry_in():
    p = policy(
        min_failures_to_heal=1, heal_cooldown_seconds=0, startup_grace_seconds=0, max_heals=2, retry_in_seconds=600
    )
    state = MonitorState("bot")
    assert heal_now(p, state, at(0)).heal
    assert heal_now(p, state, at(1)).heal
    verdict = heal_now(p, state, at(2))
    assert verdict.quarantine_now and not verdict.heal
    assert state.quarantined_until is not None
    for second in (3, 300, 601):
        held = heal_now(p, state, at(second))
        assert held.quarantined and not held.heal
    retry = heal_now(p, state, at(603))
    assert retry.heal and retry.retrying, "the quarantine ran out: one more try"
    assert heal_now(p, state, at(604)).quarantine_now, "failing again puts it straight back"


def test_a_stable_period_resets_the_budget_and_resume_lifts_the_quarantine():
    p = policy(
        min_failures_to_heal=1, heal_cooldown_seconds=0, startup_grace_seconds=0, max_heals=1, stable_after_seconds=100
    )
    state = MonitorState("bot")
    assert heal_now(p, state, at(0)).heal
    p.observe(state, Status.HEALTHY, "fine", at(10))
    p.observe(state, Status.HEALTHY, "fine", at(50))
    assert state.heals_in_streak == 1, "not stable long enough yet"
    p.observe(state, Status.HEALTHY, "fine", at(111))
    assert state.heals_in_streak == 0
    assert heal_now(p, state, at(120)).heal
    assert heal_now(p, state, at(121)).quarantine_now
    HealPolicy.resume(state)
    assert heal_now(p, state, at(122)).heal


def test_a_quarantine_survives_a_restart_and_a_reboot():
    p = policy(
        min_failures_to_heal=1, heal_cooldown_seconds=0, startup_grace_seconds=0, max_heals=1, retry_in_seconds=600
    )
    state = MonitorState("bot")
    heal_now(p, state, at(0))
    assert heal_now(p, state, at(1)).quarantine_now
    stored = state.to_stored()
    # Rebooted 100 s later: a new boot id and a monotonic clock that starts again near zero.
    restored = MonitorState.restore(stored, Instant(wall=1_000_000 + 101, mono=5.0, boot="boot-b"))
    assert restored.heals_in_streak == 1
    assert heal_now(p, restored, Instant(wall=1_000_000 + 500, mono=404.0, boot="boot-b")).quarantined
    assert heal_now(p, restored, Instant(wall=1_000_000 + 602, mono=506.0, boot="boot-b")).heal
