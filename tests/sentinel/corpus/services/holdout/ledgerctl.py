"""``python ledgerctl.py PORT``: the ledger sync's own status command. Exit 0 when it answers, 2 when not."""

from __future__ import annotations

import socket
import sys

port = int(sys.argv[1])
try:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        conn.sendall(b"STATUS\n")
        answer = conn.makefile().readline().strip()
except OSError as exc:
    print(f"ledger-sync: not reachable at 127.0.0.1:{port} ({exc.strerror or exc})")
    sys.exit(2)
print(f"ledger-sync: {answer}")
