"""A pricer that computes a spread for every quote of its feed; it handles nothing it did not expect.

After the healthy period the feed sends a quote without ``best_bid`` (a halted market): the KeyError is
not handled, and Python prints it on stderr as the process ends.
"""

from __future__ import annotations

import json
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log


def feed(tick: int, halted: bool) -> dict[str, float]:
    if halted:
        return {"best_ask": 2211.6, "last": 2211.5}
    return {"best_bid": 2211.4, "best_ask": 2211.6, "last": 2211.5}


def price(quote: dict[str, float]) -> float:
    spread = quote["best_ask"] - quote["best_bid"]
    return round(spread / quote["last"] * 10_000, 2)


def main() -> None:
    log.info("pricer started")
    for tick in kit.ticks():
        halted = not kit.healthy()
        if halted:
            kit.failing()
        bps = price(feed(tick, halted))
        Path(kit["out_dir"], "spread.json").write_text(json.dumps({"tick": tick, "bps": bps}))
        log.info("spread for ETH-PERP: %.2f bps", bps)
        kit.tick_noise(tick)


main()
