"""A ledger sync daemon logging with loguru's format: it imports its settings module (``ledger_settings``,
in the same git work tree), then reconciles the ledger every tick and answers ``STATUS`` on ``port``.

A settings module that cannot be imported ends the process before its logger is set up: Python prints
the traceback to stderr (the shell loop's output) and exits 1.
"""

from __future__ import annotations

import socketserver
import threading
import time

import ledger_settings
from holdout_kit import Service

svc = Service()
log = svc.logger("ledger.sync")
last_sync = time.monotonic()


class Status(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(f"up, last sync {time.monotonic() - last_sync:.1f} s ago\n".encode())


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("reconciled 96 entries against %s", ledger_settings.LEDGER_NAME)
    if tick % 5 == 2:
        log.info("sync stats: mismatches=0 retries=0 errors=0")
    if tick % 7 == 3:
        log.warning("entry 4471 has no counterparty tag; defaulting to 'internal'")


svc.history(routine)
server = socketserver.ThreadingTCPServer(("127.0.0.1", int(svc["port"])), Status)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
log.info("ledger-sync started (ledger %s, status port %s)", ledger_settings.LEDGER_NAME, svc["port"])
tick = 0
while True:
    routine(tick)
    last_sync = time.monotonic()
    tick += 1
    svc.sleep()
