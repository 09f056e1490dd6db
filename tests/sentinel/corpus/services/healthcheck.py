"""The service's own health command: its status file must have been rewritten within LIMIT seconds.

``python healthcheck.py STATUS_FILE LIMIT``: exit 0 when fresh; exit 1 with one line saying why.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

status, limit = Path(sys.argv[1]), float(sys.argv[2])
try:
    age = time.time() - status.stat().st_mtime
except FileNotFoundError:
    print(f"{status.name} does not exist")
    sys.exit(1)
if age > limit:
    print(f"{status.name} was last written {age:.1f} s ago (limit {limit:g} s)")
    sys.exit(1)
print(f"{status.name} written {age:.1f} s ago")
