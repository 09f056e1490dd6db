"""A tiny service for the runner's tests: it speaks the instance side of the runner protocol itself.

The test copies it into a source dir as bot.py next to behaviour.json, which chooses how it behaves:
{"mode": "normal" | "crash_at_start" | "never_ready" | "silent" | "slow_ready" | "hang_after_promote" | "crash_after"
 | "trip_after" | "ignore_handover" | "hang_in_cycle", "after": seconds, "lines": path}. Once trading it runs a
cycle every 0.05 s that appends "epoch pid time" to the lines file, so the test can check that no two epochs ever
traded at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import socket
import sys
import threading
import time

CYCLE = 0.05


def main() -> None:
    with open("behaviour.json", encoding="utf-8") as f:
        behaviour = json.load(f)
    mode = behaviour.get("mode", "normal")
    after = float(behaviour.get("after", 0.3))
    channel = socket.socket(fileno=int(os.environ["HORUS_RUNNER_FD"]))
    lease_path = os.environ["HORUS_RUNNER_LEASE"]
    ops: queue.Queue[str] = queue.Queue()

    def read_ops() -> None:
        for raw in channel.makefile("rb"):
            ops.put(json.loads(raw)["op"])
        ops.put("eof")

    threading.Thread(target=read_ops, daemon=True).start()

    def send(event: str, **fields: object) -> None:
        channel.sendall(json.dumps({"event": event, **fields}).encode() + b"\n")

    if mode == "silent":  # a service without horus_sdk's Control: it never speaks the protocol
        while ops.get() != "eof":
            pass
        sys.exit(0)
    send("hello", pid=os.getpid())
    print(f"fake instance {os.getpid()} started in mode {mode}", flush=True)
    if mode == "crash_at_start":
        print("boom: the fake instance crashed at start", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "never_ready":
        while ops.get() != "eof":
            pass
        sys.exit(0)
    if mode == "slow_ready":
        time.sleep(after)
    send("ready")
    while True:
        op = ops.get()
        if op == "eof":
            sys.exit(0)
        if op == "promote":
            break
    lease = open(lease_path, "a+")  # noqa: SIM115 - held for the process's life
    epoch = take_lease(lease, lease_path)
    send("promoted", epoch=epoch)
    if mode == "hang_after_promote":
        while True:
            time.sleep(1)
    trading_since = time.monotonic()
    first = True
    tripped = False
    while True:
        with open(behaviour["lines"], "a", encoding="utf-8") as f:
            f.write(f"{epoch} {os.getpid()} {time.time():.6f}\n")
        if first:
            send("trading", epoch=epoch)
            first = False
        if mode == "crash_after" and time.monotonic() - trading_since >= after:
            print("boom: the fake instance crashed while trading", file=sys.stderr, flush=True)
            os._exit(5)
        if mode == "hang_in_cycle" and time.monotonic() - trading_since >= after:
            while True:  # a cycle that never ends: it never reaches a boundary, so it never sees the runner go
                time.sleep(1)
        if mode == "trip_after" and not tripped and time.monotonic() - trading_since >= after:
            send("tripped", cause={"kind": "reject_burst", "count": 5})
            tripped = True
        time.sleep(CYCLE)
        # The cycle boundary: only here does the instance act on what the runner asked.
        try:
            op = ops.get_nowait()
        except queue.Empty:
            continue
        if op in ("stop", "eof"):
            release(lease)
            send_quietly(send, "released", epoch=epoch, at=time.time())
            sys.exit(0)
        if op == "handover" and mode == "ignore_handover":
            continue  # as a cycle that never ends would: it never reaches the boundary where it would release
        if op == "handover":
            release(lease)
            send("released", epoch=epoch, at=time.time())
            while True:
                op = ops.get()
                if op in ("exit", "eof", "stop"):
                    sys.exit(0)
                if op == "resume":
                    epoch = take_lease(lease, lease_path)
                    send("resumed", epoch=epoch)
                    break


def take_lease(lease: object, lease_path: str) -> int:
    deadline = time.monotonic() + 10
    while True:
        try:
            fcntl.flock(lease.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[attr-defined]
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                print("could not take the lease within 10 s", file=sys.stderr, flush=True)
                sys.exit(7)
            time.sleep(0.01)
    record = lease_path + ".json"
    try:
        with open(record, encoding="utf-8") as f:
            epoch = int(json.load(f)["epoch"]) + 1
    except (OSError, ValueError, KeyError):
        epoch = 1
    with open(record + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"format": "horus-lease/1", "epoch": epoch, "pid": os.getpid()}, f)
    os.replace(record + ".tmp", record)
    return epoch


def release(lease: object) -> None:
    fcntl.flock(lease.fileno(), fcntl.LOCK_UN)  # type: ignore[attr-defined]


def send_quietly(send: object, event: str, **fields: object) -> None:
    with contextlib.suppress(OSError):
        send(event, **fields)  # type: ignore[operator]


if __name__ == "__main__":
    main()
