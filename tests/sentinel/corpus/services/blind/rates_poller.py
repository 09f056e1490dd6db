"""An FX rates poller: fetches ``http://feed.desk.internal:<port>/v1/rates`` with urllib every tick.

It runs with a resolver configuration of its own, as in a container: ``resolv_conf`` and ``hosts_file`` are
bind-mounted over /etc/resolv.conf and /etc/hosts in a mount namespace of its own (it re-executes itself under
``unshare`` to get one), so a scenario can take a name away from it and nobody else. After a failed fetch it
backs off for ``backoff_seconds``. The standard logging module. Parameters: ``url``, ``resolv_conf``,
``hosts_file``, ``backoff_seconds``, ``output``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

if os.environ.get("RATES_POLLER_NAMESPACE") != "1":
    config = json.loads(Path(sys.argv[1]).read_text())
    inner = shlex.join(["env", "RATES_POLLER_NAMESPACE=1", sys.executable, *sys.argv])
    script = (
        f"mount --bind {shlex.quote(config['resolv_conf'])} /etc/resolv.conf && "
        f"mount --bind {shlex.quote(config['hosts_file'])} /etc/hosts && exec {inner}"
    )
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script])

import time
import urllib.error
import urllib.request

from holdout_kit import Service

svc = Service()
log = svc.logger("rates.poller")


def routine(tick: int) -> None:
    log.info("rates: %d pairs updated, max move 0.%02d%%", 24, tick % 40)
    if tick % 7 == 2:
        log.warning("pair USD/TRY moved 2.1%% since the last poll; flagged for review")
    if tick % 11 == 6:
        log.warning("GET %s timed out after 2 s; retried, answered in 310 ms", svc["url"])
    if tick % 19 == 9:
        log.error("statsd: [Errno 111] Connection refused sending rates.poll.ms")


svc.history(routine)
while True:
    try:
        with urllib.request.urlopen(svc["url"], timeout=2) as answer:
            rates = json.loads(answer.read())["rates"]
        with open(svc["output"], "a") as output:
            output.write(json.dumps({"at": time.time(), "rates": rates}) + "\n")
        log.info("rates: %d pairs updated, max move 0.%02d%%", len(rates), int(time.time()) % 40)
        svc.sleep()
    except urllib.error.URLError:
        log.exception("rates fetch failed; backing off %d s", svc["backoff_seconds"])
        time.sleep(svc["backoff_seconds"])
