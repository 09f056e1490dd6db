"""The exchange's SFTP drop: a small fills CSV into INBOX every 100 ms.

``python fill_dropper_stub.py INBOX READY_FILE`` (says 0: it listens on nothing).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from loopback import ready

inbox = Path(sys.argv[1])
ready(Path(sys.argv[-1]), 0)
batch = 0
while True:
    batch += 1
    partial = inbox / f".fills-{batch:06d}.partial"
    lines = ["fill_id,account,market,qty,px"]
    lines += [f"{batch * 100 + i},acct-{i % 31},ETH-PERP,{i % 9 + 1},2211.{i % 10}" for i in range(100)]
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, inbox / f"fills-{time.strftime('%Y%m%d')}-{batch:06d}.csv")
    time.sleep(0.1)
