"""A settlement agent that runs as ``nobody`` and rereads its API key whenever the key file changes, so a
rotated key takes effect without a restart. Logs through syslog (rsyslog's file format, a traceback's
newlines as #012); an exception it does not expect is logged by its excepthook, and the process exits.
Parameters: ``key_file``, ``out_dir``, ``run_as``.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time
import traceback  # noqa: F401 - imported while the standard library is still readable (before dropping root)
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("settlement")
key_file, out = Path(svc["key_file"]), Path(svc["out_dir"])


def routine(tick: int) -> None:
    log.info("settled batch %d: %d transfers, net %+.2f USDC", 5100 + tick, 14 + tick % 6, (tick % 13 - 6) * 812.5)
    if tick % 9 == 3:
        log.warning("transfer t-%d to acct-%d pending confirmation after 30 s", 88100 + tick, tick % 40)
    if tick % 30 == 17:
        log.info("API key reloaded from %s (fingerprint 7f3a..%02x)", key_file, tick)
    if tick % 14 == 6:
        log.error("custodian answered 409 for transfer t-%d: already settled; skipping", 88000 + tick)


def excepthook(kind: type[BaseException], value: BaseException, tb: object) -> None:
    log.critical("unhandled exception, exiting", exc_info=(kind, value, tb))  # type: ignore[arg-type]


svc.history(routine)
sys.excepthook = excepthook
user = pwd.getpwnam(svc["run_as"])
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
log.info("settlement agent started as %s, key %s", svc["run_as"], key_file)
key_mtime, batch = 0.0, 0
while True:
    mtime = key_file.stat().st_mtime
    if mtime != key_mtime:
        api_key = key_file.read_text().strip()
        key_mtime = mtime
        log.info("API key reloaded from %s (fingerprint %s..%s)", key_file, api_key[:4], api_key[-2:])
    batch += 1
    (out / f"batch-{batch:06d}.json").write_text(json.dumps({"batch": batch, "at": time.time()}))
    if batch % 10 == 0:
        log.info("settled batch %d: %d transfers", batch, 12)
    svc.sleep()
