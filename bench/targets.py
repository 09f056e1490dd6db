"""Load targets for the scale benchmark, in a process of their own so their CPU is nobody's.

    python bench/targets.py PORTFILE --tcp-ports 50
serves HTTP/1.1 (keep-alive, `200 ok` on any path) on one port and accept-then-close TCP on the
others, all on 127.0.0.1, and writes {"http": port, "tcp": [ports]} to PORTFILE when ready. Every
second it rewrites PORTFILE.counts with the requests and connections served so far and the monotonic
time it counted them at, so a benchmark counts the checks each watchdog really made, per second.
Port checks spread over many listeners so that a thousand connections a second never exhaust the
loopback four-tuples.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
COUNTS = {"http_requests": 0, "tcp_connections": 0}


class HttpResponder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            COUNTS["http_requests"] += 1
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            if b"connection: close" in head.lower():
                self.transport.close()
                return


class AcceptAndClose(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        COUNTS["tcp_connections"] += 1
        transport.close()


async def main(portfile: str, tcp_ports: int) -> None:
    loop = asyncio.get_running_loop()
    http = await loop.create_server(HttpResponder, "127.0.0.1", 0, backlog=4096)
    tcp = [await loop.create_server(AcceptAndClose, "127.0.0.1", 0, backlog=4096) for _ in range(tcp_ports)]
    ports = {
        "http": http.sockets[0].getsockname()[1],
        "tcp": [server.sockets[0].getsockname()[1] for server in tcp],
    }
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.replace(tmp, portfile)
    while True:
        await asyncio.sleep(1)
        with open(tmp, "w") as f:
            json.dump({**COUNTS, "at": time.monotonic()}, f)
        os.replace(tmp, portfile + ".counts")


if __name__ == "__main__":
    count = int(sys.argv[sys.argv.index("--tcp-ports") + 1]) if "--tcp-ports" in sys.argv else 50
    asyncio.run(main(sys.argv[1], count))
