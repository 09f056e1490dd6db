from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator

import psutil
import pytest

from horus.processes import (
    Liveness,
    ProcessIdentity,
    anchored_pattern,
    display_cmdline,
    find_matching,
    liveness,
    match_processes,
    protected_pids,
    send_signal,
    validate_pattern,
    validate_user,
)
from tests.other_user import other_user, process_of
from tests.process_support import NOTE_SIGNALS, WITH_GRANDCHILD, ZOMBIE_PARENT, ProcessSpawner
from tests.support import wait_until_sync


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def test_a_process_is_found_by_any_part_of_its_full_command_line(spawner):
    marker = spawner.marker()
    target = spawner.detached(marker)
    found = find_matching(f"time.sleep(60) {marker}")  # spans two arguments
    assert [m.pid for m in found] == [target.pid]
    assert found[0].create_time == psutil.Process(target.pid).create_time()
    assert found[0].cmdline.endswith(f"-c import time; time.sleep(60) {marker}")


def test_a_plain_pattern_is_a_substring_and_a_regex_pattern_is_searched(spawner):
    marker = spawner.marker()
    target = spawner.detached(marker)
    assert find_matching(rf"sleep(6.) {marker}") == []
    found = find_matching(rf"sleep\(6.\) {marker}$", regex=True)
    assert [m.pid for m in found] == [target.pid]


def test_matches_are_sorted_by_pid(spawner):
    marker = spawner.marker()
    pids = sorted([spawner.detached(marker).pid, spawner.detached(marker).pid])
    assert [m.pid for m in find_matching(marker)] == pids


def test_horus_itself_its_ancestors_and_pid_1_are_never_matched(spawner):
    ancestors = {p.pid for p in psutil.Process().parents()}
    # A word of this test process's own command line (pytest's, or a pytest-xdist worker's).
    own_word = max(psutil.Process().cmdline(), key=len)
    assert os.getpid() not in {m.pid for m in find_matching(own_word)}

    # A process of its own, so the test does not depend on what else runs on the machine.
    unrelated = spawner.detached(spawner.marker())
    everything = {m.pid for m in find_matching(".", regex=True)}
    assert unrelated.pid in everything, "a pattern matching every command line matches an unrelated process"
    assert os.getpid() not in everything
    assert os.getppid() not in everything
    assert 1 not in everything
    assert not everything & ancestors
    assert {os.getpid(), os.getppid(), 1} | ancestors <= protected_pids()


def test_a_descendant_of_horus_is_never_matched_even_when_its_command_line_matches(spawner):
    marker = spawner.marker()
    child = spawner.child(marker, WITH_GRANDCHILD)  # the child and its grandchild both carry the marker
    wait_until_sync(lambda: psutil.Process(child.pid).children())
    spawner.track(psutil.Process(child.pid).children()[0].pid)
    outsider = spawner.detached(marker)
    assert [m.pid for m in find_matching(marker)] == [outsider.pid]


def test_a_zombie_is_never_matched(spawner):
    marker = spawner.marker()
    parent = spawner.detached(marker, ZOMBIE_PARENT)
    wait_until_sync(lambda: any(c.status() == psutil.STATUS_ZOMBIE for c in psutil.Process(parent.pid).children()))
    assert find_matching(f"{marker}-zombie") == []


def test_only_processes_of_the_wanted_user_match_and_the_others_are_listed_apart(spawner):
    user = other_user()
    marker = spawner.marker()
    ours = spawner.detached(marker)
    with process_of(user, marker) as theirs:
        by_default = match_processes(marker)
        for_them = match_processes(marker, uid=user.uid)
    assert [m.pid for m in by_default.ours] == [ours.pid]  # the user Horus runs as
    assert [(o.identity.pid, o.uid) for o in by_default.others] == [(theirs, user.uid)]
    assert [m.pid for m in for_them.ours] == [theirs]
    assert [(o.identity.pid, o.uid) for o in for_them.others] == [(ours.pid, os.geteuid())]
    assert [m.pid for m in find_matching(marker)] == [ours.pid]


def test_a_process_acting_as_another_user_than_the_one_that_started_it_is_nobodys(spawner):
    # As a setuid-root program run by a user: real uid the user's, effective uid root's.
    user = other_user()
    marker = spawner.marker()
    with process_of(user, marker, effective_root=True) as mixed:
        assert find_matching(marker, uid=0) == []
        assert find_matching(marker, uid=user.uid) == []
        assert [o.identity.pid for o in match_processes(marker).others] == [mixed]


def test_a_user_is_a_name_that_exists_or_a_numeric_uid():
    assert validate_user("root") == "root"
    assert validate_user(0) == 0
    assert validate_user("1001") == 1001
    for bad in ("", True, 1.5, None):
        with pytest.raises(ValueError, match="must be a user name or a numeric uid"):
            validate_user(bad)
    for out_of_range in (-1, 2**32):
        with pytest.raises(ValueError, match=r"a uid is 0\.\.4294967294"):
            validate_user(out_of_range)
    with pytest.raises(ValueError, match="no such user on this machine"):
        validate_user("no-such-user-horus")


def test_liveness_tells_a_running_process_from_a_reused_pid_and_an_exited_one(spawner):
    target = spawner.detached(spawner.marker())
    identity = target.identity
    assert liveness(identity) is Liveness.RUNNING
    assert liveness(dataclasses.replace(identity, create_time=identity.create_time - 1)) is Liveness.REUSED
    os.kill(target.pid, signal.SIGKILL)
    wait_until_sync(lambda: liveness(identity) is Liveness.EXITED)


def test_a_pid_whose_start_time_changed_is_never_signalled(spawner):
    target = spawner.detached(spawner.marker(), NOTE_SIGNALS)
    wait_until_sync(lambda: target.said("ready"))
    impostor = dataclasses.replace(target.identity, create_time=target.identity.create_time + 1)
    assert send_signal(impostor, signal.SIGTERM) is False
    assert send_signal(target.identity, signal.SIGWINCH) is True
    wait_until_sync(lambda: target.said("SIGWINCH"))
    assert not target.said("SIGTERM")


def test_a_process_that_has_exited_is_not_signalled(spawner):
    target = spawner.detached(spawner.marker())
    identity = target.identity
    os.kill(target.pid, signal.SIGKILL)
    wait_until_sync(lambda: liveness(identity) is Liveness.EXITED)
    assert send_signal(identity, signal.SIGTERM) is False


@pytest.mark.parametrize(
    ("pattern", "regex", "message"),
    [
        ("", False, "must not be empty"),
        ("   ", True, "must not be empty"),
        ("main.py (", True, "not a valid regular expression"),
        ("main.py|", True, "matches every process"),
        ("^", True, "matches every process"),
    ],
)
def test_a_pattern_that_is_empty_broken_or_matches_everything_is_rejected(pattern, regex, message):
    with pytest.raises(ValueError, match=message):
        validate_pattern(pattern, regex=regex)


def test_a_plain_pattern_may_hold_regex_characters():
    assert validate_pattern("main.py (", regex=False) == "main.py ("


def test_command_lines_shown_to_people_have_their_secrets_masked():
    shown = display_cmdline("python bot.py --api-key abc123 --token=xyz --rpc https://u:pw@node/x --mode fast")
    assert "abc123" not in shown
    assert "xyz" not in shown
    assert "pw@" not in shown
    assert shown.endswith("--mode fast")
    assert display_cmdline("x" * 500).endswith("…")
    assert display_cmdline("python -c 'import x\nx.run()'") == "python -c 'import x x.run()'"


def test_an_identity_names_the_process_that_has_the_pid_now():
    me = ProcessIdentity.of(os.getpid())
    assert me.create_time == psutil.Process().create_time()
    assert me.cmdline == " ".join(psutil.Process().cmdline())


def test_an_anchored_pattern_names_the_service_and_not_its_restart_loop():
    service = ProcessIdentity(101, 1.0, "python3 main.py --mode conservative")
    loop = ProcessIdentity(100, 1.0, "sh -c while true; do python3 main.py --mode conservative; sleep 5; done")
    plain = anchored_pattern("main.py --mode conservative", regex=False, services=[service], wrappers=[loop])
    assert plain == "^python3 main[.]py --mode conservative"
    regex = anchored_pattern(r"main\.py --mode \w+", regex=True, services=[service], wrappers=[loop])
    assert regex == r"^python3 (?:main\.py --mode \w+)"


def test_no_anchored_pattern_is_offered_when_it_would_repeat_a_secret_or_match_the_wrapper_too():
    secret = ProcessIdentity(101, 1.0, "python3 --token abc123 main.py")
    loop = ProcessIdentity(100, 1.0, "sh -c python3 --token abc123 main.py")
    assert anchored_pattern("main.py", regex=False, services=[secret], wrappers=[loop]) is None
    service = ProcessIdentity(101, 1.0, "main.py --mode conservative")
    same_start = ProcessIdentity(100, 1.0, "main.py --mode conservative --supervise")
    assert anchored_pattern("main.py", regex=False, services=[service], wrappers=[same_start]) is None
