"""The bot's loop: quotes in, opportunities out (a trade file each), a status file and ``/health``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from service_kit import Kit

from bot import settings, signals
from bot.exchange import ExchangeClient


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    kit = Kit()
    log = kit.log
    config = settings.load()
    if kit.get("health_port"):
        server = ThreadingHTTPServer(("127.0.0.1", int(kit["health_port"])), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ExchangeClient(config.markets)
    log.info("bot started: %d markets, minimum edge %s bps", len(config.markets), signals.MIN_EDGE_BPS)
    trades = 0
    for tick in kit.ticks():
        found = signals.opportunities(client.quotes())
        for market, edge in found:
            trades += 1
            Path(kit["out_dir"], f"trade-{trades:05d}.json").write_text(json.dumps({"market": market, "edge": edge}))
        log.info(
            "scan %d: %d markets, %d opportunities above %s bps",
            tick, len(config.markets), len(found), signals.MIN_EDGE_BPS,
        )  # fmt: skip
        Path(kit["status_file"]).write_text(json.dumps({"tick": tick, "at": time.time()}))
        kit.tick_noise(tick)
