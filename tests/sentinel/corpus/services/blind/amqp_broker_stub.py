"""A message broker stand-in: delivers a settlement task every 60 ms to each consumer connected to it.

``python amqp_broker_stub.py READY_FILE``. A delivery is one line, ``<task id> <task name> <json kwargs>``
(what the worker's py-amqp stand-in reads as a frame). A scenario kills it with SIGKILL, as the OOM killer
or a host reboot would end a RabbitMQ node.
"""

from __future__ import annotations

import json
import socketserver
import sys
import time
import uuid
from pathlib import Path

from loopback import ready


class Deliveries(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sequence = 0
        while True:
            sequence += 1
            kwargs = {"fill_id": 880000 + sequence, "account": f"acct-{sequence % 37}", "qty": sequence % 9 + 1}
            line = f"{uuid.uuid4()} tasks.settle_fill {json.dumps(kwargs)}\n"
            try:
                self.request.sendall(line.encode())
            except OSError:
                return
            time.sleep(0.06)


class Broker(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


with Broker(("127.0.0.1", 0), Deliveries) as server:
    ready(Path(sys.argv[-1]), server.server_address[1])
    server.serve_forever()
