"""An S3-compatible endpoint: PutObject stores the key and its time; ListObjectsV2 lists them.

``python s3_stub.py MODE_FILE READY_FILE``. While MODE_FILE says ``slowdown``, every PUT is refused the way S3
refuses a prefix that gets more requests than it can take: 503 and a ``SlowDown`` error document.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from loopback import mode, ready

MODE_FILE = Path(sys.argv[1])
OBJECTS: dict[str, float] = {}
LOCK = threading.Lock()
SLOW_DOWN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.'
    "</Message><RequestId>7Q3TBJ2XKZ8M0FQH</RequestId><HostId>kJ0u3Yq2w9Vh8w==</HostId></Error>"
)


class S3(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if mode(MODE_FILE) == "slowdown":
            self.answer(503, SLOW_DOWN)
            return
        with LOCK:
            OBJECTS[self.path.lstrip("/")] = time.time()
        self.answer(200, "")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        bucket = parts.path.strip("/")
        prefix = parse_qs(parts.query).get("prefix", [""])[0]
        with LOCK:
            found = sorted((key, at) for key, at in OBJECTS.items() if key.startswith(f"{bucket}/{prefix}"))
        contents = "".join(
            f"<Contents><Key>{key.split('/', 1)[1]}</Key><LastModified>"
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(at))}.{int(at % 1 * 1000):03d}Z</LastModified></Contents>"
            for key, at in found
        )
        self.answer(
            200,
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<ListBucketResult><Name>{bucket}</Name>{contents}</ListBucketResult>",
        )

    def answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), S3)
ready(Path(sys.argv[-1]), server.server_address[1])
server.serve_forever()
