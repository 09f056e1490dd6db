"""A Go quote fetcher, as its binary behaves: logrus's text lines, a unary RPC per tick with a 500 ms deadline.

Each answer's quotes are appended to ``output``. A call that outlives its deadline fails as grpc-go says it
does (``rpc error: code = DeadlineExceeded desc = context deadline exceeded``) and is retried after a backoff
(doubling, at most 2 s). Parameters: ``target``, ``output``.
"""

from __future__ import annotations

import json
import socket
import time

from holdout_kit import Service

svc = Service()
log = svc.logger("quotes")
host, _, port = svc["target"].rpartition(":")
METHOD = "/desk.quotes.v1.QuoteService/GetQuotes"
DEADLINE = 0.5


def routine(tick: int) -> None:
    log.info("quotes received", extra={"method": METHOD, "count": 2, "took": f"{11 + tick % 7}ms"})
    if tick % 9 == 4:
        log.warning("slow rpc", extra={"method": METHOD, "took": f"{380 + tick}ms"})
    if tick % 14 == 6:
        log.info("channel state changed", extra={"target": svc["target"], "state": "READY"})
    if tick in (40, 118, 161):
        # An occasional deadline, retried at once and answered: the usual life of an RPC client.
        log.warning(
            "rpc failed, retrying",
            extra={
                "method": METHOD,
                "error": "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                "backoff": "0s",
            },
        )
    if tick % 25 == 17:
        log.error(
            "metrics push failed",
            extra={
                "error": 'Post "http://127.0.0.1:9091/metrics/job/quotes": '
                "dial tcp 127.0.0.1:9091: connect: connection refused"
            },
        )


def get_quotes(connection: socket.socket, reader: object) -> list[dict[str, object]]:
    connection.settimeout(DEADLINE)
    connection.sendall(b'{"markets": ["ETH-PERP", "BTC-PERP"]}\n')
    line = reader.readline()  # type: ignore[attr-defined]
    if not line:
        raise ConnectionError("rpc error: code = Unavailable desc = error reading from server: EOF")
    quotes: list[dict[str, object]] = json.loads(line)["quotes"]
    return quotes


svc.history(routine)
log.info("dialing quote service", extra={"target": svc["target"]})
connection = socket.create_connection((host, int(port)), timeout=2)
reader = connection.makefile("rb")
backoff, calls = 0.25, 0
while True:
    try:
        quotes = get_quotes(connection, reader)
    except TimeoutError:
        log.error(
            "GetQuotes failed",
            extra={
                "method": METHOD,
                "error": "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                "deadline": "500ms",
                "retry_in": f"{backoff:g}s",
            },
        )
        # The stream is poisoned by the abandoned call: a new connection, as grpc-go's transport would make.
        connection.close()
        connection = socket.create_connection((host, int(port)), timeout=2)
        reader = connection.makefile("rb")
        time.sleep(backoff)
        backoff = min(backoff * 2, 2.0)
        continue
    backoff = 0.25
    with open(svc["output"], "a") as output:
        output.write(json.dumps({"at": time.time(), "quotes": quotes}) + "\n")
    calls += 1
    if calls % 20 == 0:
        log.info("quotes received", extra={"method": METHOD, "count": len(quotes), "took": "2ms"})
    svc.sleep()
