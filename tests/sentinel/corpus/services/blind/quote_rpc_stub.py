"""A quote service behind a gRPC-like unary call: one request line in, one JSON answer line out.

``python quote_rpc_stub.py MODE_FILE READY_FILE``. While MODE_FILE says ``stalled`` the server still accepts
connections and reads requests, but its handlers are stuck (a lock, a dead database behind it) and nothing
is ever answered.
"""

from __future__ import annotations

import json
import socketserver
import sys
import time
from pathlib import Path

from loopback import mode, ready

MODE_FILE = Path(sys.argv[1])


class Unary(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for _ in self.rfile:
            while mode(MODE_FILE) == "stalled":
                time.sleep(0.05)
            quotes = [
                {"market": "ETH-PERP", "bid": 2211.4, "ask": 2211.6},
                {"market": "BTC-PERP", "bid": 64209.5, "ask": 64210.5},
            ]
            self.wfile.write(json.dumps({"quotes": quotes}).encode() + b"\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


with Server(("127.0.0.1", 0), Unary) as server:
    ready(Path(sys.argv[-1]), server.server_address[1])
    server.serve_forever()
