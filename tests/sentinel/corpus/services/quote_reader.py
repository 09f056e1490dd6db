"""Reads quotes from a line feed at ``feed_port`` over a blocking socket with no timeout.

If the feed's server stops answering while it keeps the connection open, ``read_quote`` waits in recv()
forever and the log stops. Nothing is logged about it: nothing in the service knows.
"""

from __future__ import annotations

import socket

from service_kit import Kit

kit = Kit()
log = kit.log


def read_quote(sock: socket.socket) -> bytes:
    sock.sendall(b"Q quote ETH-PERP\n")
    return sock.recv(4096)


def main() -> None:
    sock = socket.create_connection(("127.0.0.1", int(kit["feed_port"])))
    log.info("quote reader connected to the feed")
    for tick in kit.ticks():
        answer = read_quote(sock)
        log.info("quote %d: %s", tick, answer.decode().strip())
        kit.tick_noise(tick)


main()
