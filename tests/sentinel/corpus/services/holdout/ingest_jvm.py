"""A Java trade-ingest service (stand-in) writing Spring Boot's console log to stdout and stderr.

Its consumer thread appends each batch to an in-memory buffer and writes ``status_file`` after each
batch. A replay request (``replay_flag`` appears) makes the buffer grow with real allocations until it
passes ``heap_bytes`` (the JVM's -Xmx): the JVM's report of an uncaught OutOfMemoryError in that thread is
printed to stderr, the thread dies, and the rest of the process lives on, writing only its routine.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
app = svc.logger("c.d.ingest.IngestApplication")
consumer_log = svc.logger("c.d.ingest.kafka.TradeConsumer")
hikari = svc.logger("com.zaxxer.hikari.pool.HikariPool")
refdata = svc.logger("c.d.ingest.refdata.InstrumentCache")
status = Path(svc["status_file"])
flag = Path(svc["replay_flag"])
heap = int(svc["heap_bytes"])


def routine(tick: int) -> None:
    if tick % 3 == 0:
        consumer_log.info(
            "Consumed 250 records from trades-3 at offset %d",
            88_412_000 + tick * 250,
            extra={"java_thread": "kafka-consumer-1"},
        )
    if tick % 5 == 2:
        refdata.error(
            "Unknown instrument id 0x7f3a in reference data; skipping record", extra={"java_thread": "kafka-consumer-1"}
        )
    if tick % 7 == 1:
        app.info("gc: young=12 old=0 pause_ms=3 alloc_failures=0")


def consume() -> None:
    buffer: list[bytes] = []
    held = 0
    tick = 0
    while True:
        if flag.exists():
            if not buffer:
                consumer_log.info(
                    "Replay requested: seeking trades-3 to offset 0 (3 days, 41M records)",
                    extra={"java_thread": "kafka-consumer-1"},
                )
            chunk = bytes(4 * 1024 * 1024)
            if held + len(chunk) > heap:
                svc.failing()
                sys.stderr.write(
                    'Exception in thread "kafka-consumer-1" java.lang.OutOfMemoryError: Java heap space\n'
                    "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)\n"
                    "\tat java.base/java.util.ArrayList.grow(ArrayList.java:237)\n"
                    "\tat java.base/java.util.ArrayList.add(ArrayList.java:484)\n"
                    "\tat com.desk.ingest.kafka.TradeBuffer.append(TradeBuffer.java:58)\n"
                    "\tat com.desk.ingest.kafka.TradeConsumer.run(TradeConsumer.java:112)\n"
                    "\tat java.base/java.lang.Thread.run(Thread.java:1583)\n"
                )
                sys.stderr.flush()
                return
            buffer.append(chunk)
            held += len(chunk)
            time.sleep(0.02)
            continue
        routine(tick)
        status.write_text(f'{{"offset": {88_412_000 + tick * 250}, "lag": 0}}\n')
        tick += 1
        svc.sleep()


svc.history(routine)
app.info("Started IngestApplication in 4.213 seconds (process running for 4.9)")
hikari.info("HikariPool-1 - Start completed.", extra={"java_thread": "main"})
worker = threading.Thread(target=consume, name="kafka-consumer-1")
worker.start()
worker.join()
# The JVM stays up: the web server and the pool's housekeeper still run, the consumer is gone.
beats = 0
while True:
    time.sleep(0.4)
    beats += 1
    if beats % 3 == 0:
        hikari.warning(
            "HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta=1m2s).",
            extra={"java_thread": "HikariPool-1 housekeeper"},
        )
    if beats % 5 == 0:
        app.info("Tomcat: GET /actuator/health 200 in 2 ms", extra={"java_thread": "http-nio-8081-exec-3"})
