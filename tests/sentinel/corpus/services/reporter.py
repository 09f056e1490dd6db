"""A reporting job that starts as root, opens its log, and drops to an unprivileged user (``run_as``).

``mode``:

- ``reports``: writes a CSV of fills per tick into ``reports_dir``, which belongs to the service's user;
  something else (an archiving job run by root) may take the directory back;
- ``key``: re-reads its API key (``key_file``) before each call, as its reconnect logic does; a deploy
  may rewrite the key as root with mode 0600.

Everything it needs is imported before the privileges are dropped: the interpreter's own directory may
not be readable by that user.
"""

from __future__ import annotations

import csv
import grp
import io
import linecache
import os
import pwd
import time
import traceback
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log
_ = (io, linecache, traceback)  # used by logging's traceback formatting, after the privileges are gone


def drop_privileges(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    log.info("dropped privileges to %s (uid %d, gid %s)", user, entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_name)


def write_report(tick: int) -> None:
    path = Path(kit["reports_dir"]) / f"fills-{tick:05d}.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["tick", "market", "qty", "px"])
        writer.writerow([tick, "ETH-PERP", 3, 2211.5])


def read_key() -> str:
    return Path(kit["key_file"]).read_text().strip()


def main() -> None:
    drop_privileges(kit["run_as"])
    for tick in kit.ticks():
        try:
            if kit["mode"] == "reports":
                write_report(tick)
            else:
                key = read_key()
                Path(kit["status_file"]).write_text(f'{{"tick": {tick}, "at": {time.time()}, "key": "{key[:4]}…"}}')
        except OSError:
            log.exception("report %d failed", tick)
            continue
        log.info("report %d written", tick)
        kit.tick_noise(tick)


main()
