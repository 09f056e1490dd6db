"""Reconciles records from an inbox file, committing its offset after each one; run by a shell loop.

After the healthy period a record with ``"fee": null`` is appended. Adding it raises TypeError; the
reconciler logs it (python-json-logger) and exits without committing, so every restart meets it again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log
inbox = Path(kit["inbox"])
offset_file = Path(kit["offset_file"])


def main() -> None:
    offset = int(offset_file.read_text()) if offset_file.exists() else 0
    log.info("reconciler starting at offset %d", offset)
    total = 0.0
    for tick in kit.ticks():
        if not kit.healthy() and not kit.is_failing():
            kit.failing()
            with inbox.open("a") as out:
                out.write(json.dumps({"id": "fill-88213", "qty": 3, "fee": None}) + "\n")
        elif kit.healthy():
            with inbox.open("a") as out:
                out.write(json.dumps({"id": f"fill-{tick}", "qty": 3, "fee": 0.42}) + "\n")
        records = inbox.read_text().splitlines()[offset:]
        for line in records:
            record = json.loads(line)
            try:
                total = total + record["fee"]
            except TypeError:
                log.exception("reconciliation failed", extra={"record": record["id"], "offset": offset})
                sys.exit(1)
            offset += 1
            offset_file.write_text(str(offset))
        Path(kit["status_file"]).write_text(json.dumps({"offset": offset, "fees": total, "at": time.time()}))
        log.info("reconciled up to offset %d", offset)
        kit.tick_noise(tick)


main()
