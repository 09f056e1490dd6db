"""A risk engine that reads exposures from a feed at ``feed_port`` and writes a report per tick.

When the feed goes away, it reconnects the way too much code does: in a loop with no pause and no log,
swallowing each refusal, so it spins at full CPU and reports nothing.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log


def reconnect() -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", int(kit["feed_port"])), timeout=1.0)
        except OSError:
            continue


def main() -> None:
    sock = reconnect()
    reader = sock.makefile("rb")
    log.info("risk engine connected to the exposure feed")
    for tick in kit.ticks():
        try:
            sock.sendall(b"Q exposure\n")
            answer = reader.readline()
        except OSError:
            answer = b""
        if not answer:
            sock = reconnect()
            reader = sock.makefile("rb")
            continue
        Path(kit["out_dir"], f"risk-{tick:05d}.json").write_text(json.dumps({"tick": tick, "exposure": 0.41}))
        log.info("risk report %d: exposure 41%% of limit", tick)
        kit.tick_noise(tick)


main()
