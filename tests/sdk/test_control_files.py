"""control.json as two writers and a reader share it: seqs that only grow, nothing lost, nothing untrusted."""

from __future__ import annotations

import json
import os
import threading

import pytest

from horus_sdk.control_files import (
    FORMAT_STATUS,
    Command,
    control_path,
    issue_command,
    read_command,
    read_commands,
    status_path,
)
from horus_sdk.formats import RefusedFileError, write_json_atomic


def test_each_command_takes_the_next_seq_and_an_unacknowledged_one_is_queued_not_lost(tmp_path):
    halt = issue_command(tmp_path, "halt", "exchange maintenance", "alice")
    resume = issue_command(tmp_path, "resume", "maintenance over", "alice", expires_in=60)
    assert (halt.seq, resume.seq) == (1, 2)
    assert [(c.seq, c.command) for c in read_commands(tmp_path)] == [(1, "halt"), (2, "resume")]
    assert read_command(tmp_path) == resume

    # Once the service has acknowledged seq 2, only what is newer stays queued.
    write_json_atomic(status_path(tmp_path), {"format": FORMAT_STATUS, "applied_seq": 2})
    reduce = issue_command(tmp_path, "reduce", "volatile", "bob")
    assert reduce.seq == 3
    assert [c.seq for c in read_commands(tmp_path)] == [3]


def test_the_seq_continues_past_what_the_service_saw_when_the_file_was_replaced(tmp_path):
    control_path(tmp_path).write_text("garbage")
    write_json_atomic(
        status_path(tmp_path),
        {"format": FORMAT_STATUS, "applied_seq": 6, "control": {"seq": 7, "outcome": "refused"}},
    )
    assert issue_command(tmp_path, "halt", "why", "me").seq == 8


def test_two_writers_at_once_never_give_out_the_same_seq(tmp_path):
    seqs: list[int] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        for _ in range(20):
            command = issue_command(tmp_path, "halt", f"writer {n}", f"writer {n}")
            with lock:
                seqs.append(command.seq)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 81))


def test_a_command_file_any_user_may_write_or_written_by_a_stranger_is_not_believed(tmp_path):
    issue_command(tmp_path, "resume", "trade", "someone")
    os.chmod(control_path(tmp_path), 0o666)
    with pytest.raises(RefusedFileError, match="any user may write it"):
        read_command(tmp_path)
    os.chmod(control_path(tmp_path), 0o644)
    with pytest.raises(RefusedFileError, match="not trusted"):
        read_command(tmp_path, trusted_uids={os.getuid() + 1})
    assert read_command(tmp_path, trusted_uids={os.getuid()}).command == "resume"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seq": 0}, "seq must be a whole number"),
        ({"seq": True}, "seq must be a whole number"),
        ({"command": "buy"}, "command must be one of halt, reduce, flatten, resume"),
        ({"reason": " "}, "reason must be a non-empty text"),
        ({"expires_at": "tomorrow"}, "expires_at must be a time"),
        ({"queued": [{"seq": 1}]}, "queued\\[0\\]: command must be one of"),
    ],
)
def test_a_malformed_command_is_a_located_error(tmp_path, change, message):
    good = Command(seq=3, command="halt", reason="r", issued_by="me", issued_at=1.0).to_json()
    control_path(tmp_path).write_text(json.dumps({**good, **change}))
    with pytest.raises(ValueError, match=message):
        read_command(tmp_path)


def test_the_trip_that_holds_the_bot_is_the_most_restrictive_automatic_cause_and_the_oldest_among_equals():
    from horus_sdk.control_files import holding_trip

    operator = {"source": "operator", "name": "halt", "mode": "halted"}
    reduce = {"source": "trip", "name": "failures_reduce", "mode": "reducing"}
    halt = {"source": "trip", "name": "failures_halt", "mode": "halted"}
    loss = {"source": "daily_loss", "name": "daily_loss", "mode": "halted"}
    assert holding_trip([operator, reduce, halt, loss]) is halt
    assert holding_trip([operator]) is None
    assert holding_trip("garbage") is None
