"""``python mirrorctl.py STATE_FILE LIMIT``: the quote mirror's health command. Exit 0 when its last
successful sync is at most LIMIT seconds old, 1 (with one line saying how old) when not."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

state, limit = Path(sys.argv[1]), float(sys.argv[2])
try:
    last = float(json.loads(state.read_text())["last_success"])
except (OSError, ValueError, KeyError):
    print(f"quote-mirror: no successful sync recorded in {state}")
    sys.exit(1)
age = time.time() - last
if age > limit:
    print(f"quote-mirror: last successful sync {age:.1f} s ago (limit {limit:g} s)")
    sys.exit(1)
print(f"quote-mirror: last successful sync {age:.1f} s ago")
