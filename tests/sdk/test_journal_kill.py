"""The journal under kill -9: a real process journals intents in a loop and is killed at random moments,
including while it creates the journal and while it opens it; every reopen works, no id repeats, and every
intent it reported committed is there, with the state written in the same transaction."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from horus_sdk.journal import OrderJournal, OrderState

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "src"

# Each pass commits two state keys around one intent, then says the intent's id: whatever the parent reads
# was committed before it was printed.
CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from horus_sdk.journal import OrderJournal

    journal = OrderJournal(sys.argv[2])
    print("epoch", journal.epoch, flush=True)
    count = journal.get_state("a", 0)
    while True:
        with journal.transaction():
            count += 1
            journal.put_state("a", count)
            entry = journal.intend("BTC-USD", "buy", 1.0)
            journal.put_state("b", count)
        print(entry.client_order_id, flush=True)
    """
)


def run_and_kill(path: Path, rng: random.Random, *, early: bool) -> tuple[int | None, list[str]]:
    """Start the child, SIGKILL it (early: within its first 50 ms, maybe before it has opened the journal;
    otherwise after a random number of committed intents), and return its epoch and the ids it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(SDK_SRC), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    try:
        lines: list[str] = []
        if early:
            time.sleep(rng.uniform(0.0, 0.05))  # the random moment itself, not a wait for something
        else:
            wanted = rng.randint(1, 150)
            while len(lines) < wanted + 1:
                line = child.stdout.readline()
                assert line, f"the journaling child died by itself: {child.stderr.read()}"
                lines.append(line.strip())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        lines += [line.strip() for line in child.stdout.read().splitlines()]
        stderr = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, stderr
    assert "Error" not in stderr, stderr
    epoch = int(lines[0].split()[1]) if lines else None
    return epoch, lines[1:]


def test_kill_9_at_random_moments_loses_no_committed_intent_and_repeats_no_id(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    reported: list[str] = []
    epochs: list[int] = []
    for round_number in range(12):
        early = round_number in (0, 3) or rng.random() < 0.2
        epoch, ids = run_and_kill(path, rng, early=early)
        if epoch is not None:
            epochs.append(epoch)
        reported += ids
        # Every reopen works, whatever moment the kill came at (a kill during creation leaves no journal).
        if path.exists():
            with OrderJournal(path) as journal:
                epochs.append(journal.epoch)
                orders = {e.client_order_id: e for e in journal.orders()}
                missing = [cid for cid in reported if cid not in orders]
                assert missing == [], f"seed {seed}: committed intents lost: {missing[:5]}"
                assert all(e.state is OrderState.INTENT for e in orders.values())
                # The state written around each intent, in its transaction, is whole.
                assert journal.get_state("a", 0) == journal.get_state("b", 0) == len(orders), f"seed {seed}"
        else:
            assert reported == [], f"seed {seed}: intents reported but no journal"
    assert len(reported) == len(set(reported)), f"seed {seed}: an id was reused"
    assert epochs == sorted(set(epochs)), f"seed {seed}: an epoch repeated or went back: {epochs}"
    assert len(reported) > 0
    leftovers = sorted(
        p.name for p in tmp_path.iterdir() if p.name not in ("orders.db", "orders.db-wal", "orders.db-shm")
    )
    assert all(".creating-" in name for name in leftovers), leftovers
