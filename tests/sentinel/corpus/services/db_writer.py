"""A writer that stores each fill in a database, through the driver its team chose.

``driver``: ``sqlite3`` or ``sqlalchemy`` (over the SQLite file ``database``), ``psycopg2``, ``redis`` or
``pymongo`` (over the database stand-in at ``db_port``). ``output``: ``status_file`` (rewritten after each
stored fill), ``artifacts`` (a receipt per fill in ``out_dir``) or ``health`` (``/health`` on
``health_port``, 503 once the last stored fill is older than ``stale_after``). ``exit_on_error``: a failed
write ends the process (its shell loop starts it again).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service_kit import Kit

kit = Kit()
log = kit.log
driver = kit["driver"]
last_stored = time.monotonic()


class Store:
    def __init__(self) -> None:
        self.conn: Any = None
        self.connect()

    def connect(self) -> None:
        if driver == "sqlite3":
            import sqlite3

            self.conn = sqlite3.connect(kit["database"], timeout=0.2)
            self.conn.execute("CREATE TABLE IF NOT EXISTS fills (market TEXT, qty INTEGER, px REAL)")
            self.conn.commit()
        elif driver == "sqlalchemy":
            from sqlalchemy import create_engine, text

            self.conn = create_engine(f"sqlite:///{kit['database']}", connect_args={"timeout": 0.2})
            with self.conn.begin() as connection:
                connection.execute(text("CREATE TABLE IF NOT EXISTS fills (market TEXT, qty INTEGER, px REAL)"))
        elif driver == "psycopg2":
            import psycopg2

            self.conn = psycopg2.connect(
                host="127.0.0.1", port=int(kit["db_port"]), user="trader", dbname="desk", connect_timeout=1
            )
        elif driver == "redis":
            import redis

            self.conn = redis.Redis(host="127.0.0.1", port=int(kit["db_port"]), socket_timeout=1.0)
        elif driver == "pymongo":
            from pymongo import MongoClient

            self.conn = MongoClient("127.0.0.1", int(kit["db_port"]), serverSelectionTimeoutMS=500)

    def store(self, tick: int) -> None:
        fill = {"market": "ETH-PERP", "qty": 3, "px": 2211.5}
        if driver == "sqlite3":
            self.conn.execute("INSERT INTO fills VALUES (?, ?, ?)", tuple(fill.values()))
            self.conn.commit()
        elif driver == "sqlalchemy":
            from sqlalchemy import text

            with self.conn.begin() as connection:
                connection.execute(text("INSERT INTO fills (market, qty, px) VALUES (:market, :qty, :px)"), fill)
        elif driver == "psycopg2":
            if self.conn is None or self.conn.closed:
                self.connect()
            with self.conn.cursor() as cursor:
                cursor.execute("INSERT INTO fills (market, qty, px) VALUES (%s, %s, %s)", tuple(fill.values()))
            self.conn.commit()
        elif driver == "redis":
            self.conn.incr("fills:count")
            self.conn.set(f"fill:{tick}", json.dumps(fill))
        elif driver == "pymongo":
            self.conn.desk.fills.insert_one({"tick": tick, **fill})


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        fresh = time.monotonic() - last_stored < float(kit.get("stale_after", 1.0))
        body = json.dumps({"db": "ok" if fresh else "failing"}).encode()
        self.send_response(200 if fresh else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    global last_stored
    if kit.get("output") == "health":
        server = ThreadingHTTPServer(("127.0.0.1", int(kit["health_port"])), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    store = Store()
    log.info("fill writer connected (%s)", driver)
    for tick in kit.ticks():
        try:
            store.store(tick)
        except Exception:
            log.exception("could not store fill %d", tick)
            if kit.get("exit_on_error"):
                sys.exit(1)
            if driver == "psycopg2":
                store.conn = None
            continue
        last_stored = time.monotonic()
        if kit.get("output") == "artifacts":
            Path(kit["out_dir"], f"fill-{tick:05d}.json").write_text("{}")
        elif kit.get("output") == "status_file":
            Path(kit["status_file"]).write_text(json.dumps({"tick": tick, "at": time.time()}))
        log.info("fill %d stored", tick)
        kit.tick_noise(tick)


main()
