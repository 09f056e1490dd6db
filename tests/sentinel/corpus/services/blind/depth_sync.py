"""A Go order-book syncer, as its binary behaves: zap's JSON lines in its log, a panic on stderr.

At start it fetches the book snapshot and applies it (a fixed depth of ``depth`` levels a side) before it
listens on ``port`` for the strategies; then it re-syncs every tick. A snapshot with fewer levels than the
depth indexes past the end of the slice: Go's runtime panics with "index out of range", prints every
goroutine (GOTRACEBACK=all) and exits 2. Parameters: ``api``, ``port``, ``depth``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import urllib.request

from holdout_kit import Service

svc = Service()
log = svc.logger("depthsync")
depth = int(svc["depth"])


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info(
            "book resynced",
            extra={"caller": "book/sync.go:74", "market": "ETH-PERP", "levels": depth, "seq": 981200 + tick},
        )
    if tick % 7 == 2:
        log.warning(
            "sequence gap, resyncing",
            extra={"caller": "book/sync.go:52", "market": "ETH-PERP", "expected": 981207 + tick, "got": 981209 + tick},
        )
    if tick % 11 == 4:
        log.info(
            "strategy subscribed",
            extra={"caller": "server/grpc.go:118", "peer": "127.0.0.1:51822", "market": "ETH-PERP"},
        )
    if tick % 17 == 9:
        log.error(
            "publish to strategy failed, dropping subscriber",
            extra={
                "caller": "server/grpc.go:203",
                "peer": "127.0.0.1:51830",
                "error": "rpc error: code = Canceled desc = context canceled",
            },
        )


_PANIC = """panic: runtime error: index out of range [{index}] with length {length}

goroutine 1 [running]:
github.com/deskco/depthsync/book.(*Book).ApplySnapshot(0xc0001a6000, {bids}, {asks})
\t/build/depthsync/book/book.go:88 +0x3c5
github.com/deskco/depthsync/book.(*Syncer).Resync(0xc000190090, {{0x9c2a40, 0xc0000b2000}})
\t/build/depthsync/book/sync.go:71 +0x1b2
main.run({{0x9c2a40, 0xc0000b2000}}, 0xc00018e000)
\t/build/depthsync/cmd/depthsync/main.go:61 +0x2d4
main.main()
\t/build/depthsync/cmd/depthsync/main.go:42 +0x16c

goroutine 18 [select]:
go.opencensus.io/stats/view.(*worker).start(0xc0001a2000)
\t/go/pkg/mod/go.opencensus.io@v0.24.0/stats/view/worker.go:292 +0x9f
created by go.opencensus.io/stats/view.init.0 in goroutine 1
\t/go/pkg/mod/go.opencensus.io@v0.24.0/stats/view/worker.go:34 +0x8d

goroutine 7 [IO wait]:
internal/poll.runtime_pollWait(0x7f3a8c1e2e28, 0x72)
\t/usr/local/go/src/runtime/netpoll.go:343 +0x85
internal/poll.(*pollDesc).wait(0xc0001b0080, 0xc0002c0000?, 0x0)
\t/usr/local/go/src/internal/poll/fd_poll_runtime.go:84 +0x27
net/http.(*persistConn).readLoop(0xc0001c2000)
\t/usr/local/go/src/net/http/transport.go:2238 +0xd25
created by net/http.(*Transport).dialConn in goroutine 1
\t/usr/local/go/src/net/http/transport.go:1776 +0x169f
"""


def fetch_snapshot() -> dict[str, list[list[float]]]:
    with urllib.request.urlopen(svc["api"], timeout=2) as answer:
        snapshot: dict[str, list[list[float]]] = json.loads(answer.read())
        return snapshot


def apply(snapshot: dict[str, list[list[float]]]) -> None:
    for side in ("bids", "asks"):
        levels = snapshot[side]
        try:
            for level in range(depth):
                levels[level]
        except IndexError:
            # Go prints each slice argument as its header: pointer, length, capacity.
            bids = f"{{0xc0002b4000, {len(snapshot['bids']):#x}, {len(snapshot['bids']):#x}}}"
            asks = f"{{0xc0002b4060, {len(snapshot['asks']):#x}, {len(snapshot['asks']):#x}}}"
            sys.stderr.write(_PANIC.format(index=len(levels), length=len(levels), bids=bids, asks=asks))
            sys.stderr.flush()
            os._exit(2)


def serve(listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        connection.close()


svc.history(routine)
log.info("starting depthsync", extra={"caller": "cmd/depthsync/main.go:35", "version": "v1.14.2", "depth": depth})
apply(fetch_snapshot())
listener = socket.create_server(("127.0.0.1", svc["port"]))
threading.Thread(target=serve, args=(listener,), daemon=True).start()
log.info("serving book", extra={"caller": "cmd/depthsync/main.go:48", "addr": f"127.0.0.1:{svc['port']}"})
resyncs = 0
while True:
    apply(fetch_snapshot())
    resyncs += 1
    if resyncs % 10 == 0:
        log.info(
            "book resynced",
            extra={"caller": "book/sync.go:74", "market": "ETH-PERP", "levels": depth, "seq": 990000 + resyncs},
        )
    svc.sleep()
