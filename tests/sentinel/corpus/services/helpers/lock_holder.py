"""A second process that takes SQLite's write lock and keeps it: the nightly backup job that never ends.

``python lock_holder.py DATABASE READY_FILE``: begins an EXCLUSIVE transaction on DATABASE, writes
``locked`` to READY_FILE, and sleeps with the lock held until it is killed.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
connection.execute("CREATE TABLE IF NOT EXISTS backup_progress (at REAL)")
Path(sys.argv[2]).write_text("locked")
threading.Event().wait()
