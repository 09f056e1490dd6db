"""The nightly backup script, stuck: it took SQLite's exclusive lock to copy the journal and never let go.

``python sqlite_backup.py DATABASE READY_FILE``: begins an EXCLUSIVE transaction, writes ``locked`` to
READY_FILE, and holds the lock until it is killed.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
connection.execute("CREATE TABLE IF NOT EXISTS backup_runs (started REAL)")
Path(sys.argv[2]).write_text("locked")
threading.Event().wait()
