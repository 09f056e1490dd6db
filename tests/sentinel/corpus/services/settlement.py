"""Settles fills in a worker thread; the main thread reports how many are pending.

After the healthy period a fill with zero notional arrives: the fee rate divides by zero, the thread logs
the exception (structlog) and dies. The main thread goes on reporting, louder and louder.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log
pending = 0


def settle_forever() -> None:
    global pending
    try:
        for tick in kit.ticks():
            notional = 6634.5
            if not kit.healthy():
                kit.failing()
                notional = 0.0
            fee_rate = 1.99 / notional
            Path(kit["out_dir"], f"settlement-{tick:05d}.json").write_text(json.dumps({"fee_rate": fee_rate}))
            log.info("settled fill %d", tick)
            kit.tick_noise(tick)
    except Exception:
        log.exception("settlement loop crashed")
        raise


def main() -> None:
    global pending
    threading.Thread(target=settle_forever, name="settle", daemon=True).start()
    while True:
        time.sleep(0.25)
        pending += 3
        if pending > 6:
            log.warning("%d fills waiting for settlement", pending)
        else:
            log.info("%d fills waiting for settlement", pending)


main()
