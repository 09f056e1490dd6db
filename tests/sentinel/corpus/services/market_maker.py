"""A quoting loop with nothing wrong in it: a quote file per tick in ``out_dir`` and a routine log line.

``after_healthy``: ``continue`` (the default: it never fails by itself), ``stop`` (it stops quoting and
waits, saying nothing: whatever stopped it left no trace), or ``exit`` (it returns, status 0, silently).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log


def main() -> None:
    log.info("market maker started for %s", kit.get("market", "ETH-PERP"))
    after = kit.get("after_healthy", "continue")
    for tick in kit.ticks():
        if after != "continue" and not kit.healthy():
            kit.failing()
            if after == "exit":
                return
            threading.Event().wait()
        quote = json.dumps({"tick": tick, "bid": 2211.4})
        Path(kit["out_dir"], f"quote-{tick:05d}.json").write_text(quote)
        Path(kit["out_dir"], "last-quote.json").write_text(quote)
        log.info("quoted %s: bid 2211.4 ask 2211.6 (tick %d)", kit.get("market", "ETH-PERP"), tick)
        kit.tick_noise(tick)


main()
