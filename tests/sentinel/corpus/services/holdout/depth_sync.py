"""An order-book depth sync logging with a stdlib format: every tick it GETs ``/v1/depth`` from the
exchange's gateway with http.client and no timeout (the bug), and logs routine lines.

When the gateway accepts the request and never answers, the read blocks forever: the log just stops.
"""

from __future__ import annotations

import http.client
import json

from holdout_kit import Service

svc = Service()
log = svc.logger("depth")
PORT = int(svc["api_port"])


def fetch_depth() -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", PORT)
    try:
        connection.request("GET", "/v1/depth?books=24")
        answer = connection.getresponse()
        return dict(json.loads(answer.read()))
    finally:
        connection.close()


def routine(tick: int) -> None:
    if tick % 2 == 0:
        log.info("synced depth for 24 books in 12 ms")
    if tick % 5 == 1:
        log.info("depth stats: errors=0 timeouts=0 resyncs=0")
    if tick % 7 == 3:
        log.warning("book SOL-PERP crossed (best bid >= best ask), skipping this snapshot")


svc.history(routine)
log.info("depth sync starting against 127.0.0.1:%d", PORT)
tick = 0
while True:
    fetch_depth()
    routine(tick)
    tick += 1
    svc.sleep()
