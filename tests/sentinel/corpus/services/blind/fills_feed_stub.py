"""A venue's drop-copy feed: one JSON fill per line, every 40 ms, to each connected client.

``python fills_feed_stub.py MODE_FILE READY_FILE``. When MODE_FILE says ``v2`` the venue has rolled out its
new schema: the price is ``px`` and the size ``sz`` (``price`` and ``qty`` before).
"""

from __future__ import annotations

import json
import socketserver
import sys
import time
from pathlib import Path

from loopback import mode, ready

MODE_FILE = Path(sys.argv[1])


class DropCopy(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sequence = 0
        while True:
            sequence += 1
            fill: dict[str, object] = {"fill_id": 770000 + sequence, "market": "ETH-PERP", "side": "buy"}
            if mode(MODE_FILE) == "v2":
                fill.update(px=2211.5, sz=sequence % 9 + 1, schema=2)
            else:
                fill.update(price=2211.5, qty=sequence % 9 + 1)
            try:
                self.request.sendall(json.dumps(fill).encode() + b"\n")
            except OSError:
                return
            time.sleep(0.04)


class Feed(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


with Feed(("127.0.0.1", 0), DropCopy) as server:
    ready(Path(sys.argv[-1]), server.server_address[1])
    server.serve_forever()
