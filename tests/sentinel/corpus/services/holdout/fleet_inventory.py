"""A fleet inventory job: it runs ``aws ec2 describe-instances`` every tick and writes the result to
``report`` (its consumers read that file), logging with the logging cookbook's default format.

The CLI is a real subprocess (``aws_cli.py``, calling the loopback endpoint). When it fails, its stderr is
logged as it came, and the job waits a long cycle before the next try.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("inventory.refresh")
creds = svc.logger("inventory.credentials")
report = Path(svc["report"])
AWS = [sys.executable, str(Path(__file__).resolve().parent / "aws_cli.py")]
ENDPOINT = f"http://127.0.0.1:{svc['api_port']}"


def routine(tick: int) -> None:
    if tick % 4 == 0:
        log.info("inventory: 214 instances in 3 regions (throttled=0, errors=0)")
    if tick % 9 == 5:
        creds.warning("assumed-role session expires in 900 s; refresh failed during the advisory period, will retry")
    if tick % 7 == 2:
        log.info("tag audit: 0 untagged instances, 0 orphaned volumes")


def describe() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AWS, "ec2", "describe-instances", "--output", "json", "--endpoint-url", ENDPOINT],
        capture_output=True,
        text=True,
        timeout=10,
    )


svc.history(routine)
log.info("fleet inventory starting (endpoint %s, report %s)", ENDPOINT, report)
tick = 0
while True:
    done = describe()
    if done.returncode != 0:
        svc.failing()
        log.error("aws ec2 describe-instances failed (exit %d): %s", done.returncode, done.stderr.strip())
        log.info("next inventory attempt in 300 s")
        time.sleep(300)
        continue
    instances = json.loads(done.stdout)["Reservations"][0]["Instances"]
    report.write_text(json.dumps({"instances": instances, "at": time.time()}))
    routine(tick)
    tick += 1
    svc.sleep()
