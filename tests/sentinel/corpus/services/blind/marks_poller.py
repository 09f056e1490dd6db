"""A marks poller: fetches mark prices over HTTPS (requests, the desk's CA bundle) and appends them to a
JSON-lines file that the risk engine tails. Loguru's format; a failed poll is logged with its traceback and
retried after a pause. Parameters: ``url``, ``ca_bundle``, ``output``.
"""

from __future__ import annotations

import json
import time

import requests
from holdout_kit import Service

svc = Service()
log = svc.logger("marks.poller")
session = requests.Session()


def routine(tick: int) -> None:
    log.info("polled %d marks in %d ms", 412, 38 + tick % 9)
    if tick % 8 == 5:
        log.warning("mark for LUNA-PERP is %d s old; keeping the last one", 65 + tick % 20)
    if tick % 13 == 6:
        log.warning("GET %s answered 503 (upstream busy); retrying in 0.5 s", svc["url"])
        log.info("GET %s answered 200 on attempt 2", svc["url"])
    if tick % 40 == 21:
        log.info("instrument list refreshed: 412 instruments, 3 delisted")


def poll() -> None:
    answer = session.get(svc["url"], verify=svc["ca_bundle"], timeout=2)
    answer.raise_for_status()
    marks = answer.json()["marks"]
    with open(svc["output"], "a") as output:
        for mark in marks:
            output.write(json.dumps({**mark, "at": time.time()}) + "\n")


svc.history(routine)
polls = 0
while True:
    try:
        poll()
        polls += 1
        if polls % 10 == 0:
            log.info("polled %d marks in %d ms", 412, 31)
        svc.sleep()
    except requests.RequestException:
        log.exception("marks poll failed; retrying in 0.5 s")
        # The next poll opens a new connection: the old one may be what broke.
        session.close()
        session = requests.Session()
        time.sleep(0.5)
