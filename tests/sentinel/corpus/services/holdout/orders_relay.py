"""A Go orders relay (stand-in) logging with Go's standard ``log`` package: every tick it resolves the
orders API's host name (read from ``discovery_file``, which the discovery agent renders) and forwards
orders to it. Name resolution is real (getaddrinfo); a name that does not resolve is worded as Go's
resolver words it, and after three failures the relay gives up with ``log.Fatalf`` (exit 1).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("relay")
discovery = Path(svc["discovery_file"])


def nameserver() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            if line.startswith("nameserver"):
                return line.split()[1] + ":53"
    except OSError:
        pass
    return "127.0.0.53:53"


def forward() -> int:
    target = json.loads(discovery.read_text())["orders_api"]
    host, port = target["host"], int(target["port"])
    url = f"http://{host}:{port}/v1/orders"
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
    except socket.gaierror as exc:
        raise RuntimeError(f'Post "{url}": dial tcp: lookup {host} on {nameserver()}: no such host') from exc
    with socket.create_connection(address[:2], timeout=1.0) as conn:
        conn.sendall(b"POST /v1/orders HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        conn.recv(64)
    return 18


def routine(tick: int) -> None:
    if tick % 2 == 0:
        log.info("relay: forwarded 18 orders (0 rejected, 0 retries)")
    if tick % 6 == 1:
        log.info("http: TLS handshake error from 10.0.3.41:%d: EOF", 51000 + tick % 500)
    if tick % 9 == 4:
        log.info("relay: upstream latency p99 41ms")


svc.history(routine)
log.info("relay: starting, upstreams from %s", discovery)
failures = 0
tick = 0
while True:
    try:
        forward()
        failures = 0
        routine(tick)
    except RuntimeError as exc:
        svc.failing()
        failures += 1
        if failures >= 3:
            log.info("relay: giving up: %s", exc)
            sys.exit(1)
        log.info("relay: forward orders: %s (attempt %d/3)", exc, failures)
        time.sleep(0.2)
    tick += 1
    svc.sleep()
