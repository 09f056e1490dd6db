"""Parses exchange snapshots into files; its address space is capped (``memory_limit_mb``, RLIMIT_AS).

After the healthy period the exchange announces a snapshot of ``big_snapshot_bytes`` and the parser
preallocates a buffer for it: MemoryError, logged (python-json-logger), on every tick from then on.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log


def parse_snapshot(announced: int) -> dict[str, object]:
    buffer = bytearray(announced)
    return {"bytes": len(buffer), "levels": 20}


def main() -> None:
    limit = int(kit["memory_limit_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for tick in kit.ticks():
        announced = 256 * 1024
        if not kit.healthy():
            kit.failing()
            announced = int(kit["big_snapshot_bytes"])
        try:
            parsed = parse_snapshot(announced)
        except MemoryError:
            log.exception("snapshot %d could not be parsed", tick, extra={"announced_bytes": announced})
            continue
        Path(kit["out_dir"], f"book-{tick:05d}.json").write_text(json.dumps(parsed))
        log.info("snapshot %d parsed", tick)
        kit.tick_noise(tick)


main()
