"""Ships each minute's fills to S3: a gzip'd JSON-lines part into a local spool, then PutObject (boto3 with
the standard retry mode), oldest part first. python-json-logger's format. Parameters: ``endpoint``,
``bucket``, ``spool``.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from holdout_kit import Service

svc = Service()
log = svc.logger("fills.uploader")
bucket, spool = svc["bucket"], Path(svc["spool"])
s3 = boto3.client("s3", endpoint_url=svc["endpoint"], config=Config(retries={"mode": "standard", "max_attempts": 3}))


def routine(tick: int) -> None:
    key = f"fills/2026/11/21/part-{tick:05d}.jsonl.gz"
    log.info("uploaded s3://%s/%s", bucket, key, extra={"bytes": 18211 + tick * 7, "ms": 41 + tick % 13})
    if tick % 10 == 6:
        log.info("spool: %d parts pending upload", 1)
    if tick in (57, 131):
        # S3 throttles a busy prefix now and then; the SDK's retries absorbed these.
        log.warning(
            "upload of s3://%s/%s was throttled (SlowDown), succeeded after 1 retry", bucket, key, extra={"ms": 612}
        )
    if tick % 17 == 8:
        log.warning("fill 88%04d arrived after its minute closed; written to the next part", tick)


def spool_part(sequence: int) -> None:
    lines = [json.dumps({"fill_id": sequence * 20 + i, "qty": i % 9 + 1}) for i in range(20)]
    (spool / f"part-{sequence:06d}.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))


svc.history(routine)
sequence = 0
while True:
    sequence += 1
    spool_part(sequence)
    pending = sorted(spool.glob("part-*.jsonl.gz"))
    if len(pending) > 5:
        log.warning("spool: %d parts pending upload", len(pending))
    for part in pending:
        key = f"fills/{time.strftime('%Y/%m/%d')}/{part.name}"
        started = time.monotonic()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=part.read_bytes())
        except ClientError:
            log.exception("upload of s3://%s/%s failed", bucket, key)
            time.sleep(0.5)
            break
        part.unlink()
        if sequence % 10 == 0:
            log.info(
                "uploaded s3://%s/%s",
                bucket,
                key,
                extra={"bytes": 1800, "ms": int((time.monotonic() - started) * 1000)},
            )
    svc.sleep()
