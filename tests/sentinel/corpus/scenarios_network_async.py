"""The same upstream failures seen by an asyncio service on aiohttp, and by a relay that logs like Go (zap)."""

from __future__ import annotations

import json

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Plan, Run, Scenario
from tests.sentinel.corpus.scenarios_network import break_api, make_certificates, start_api


def refused_aiohttp_pino(run: Run) -> Plan:
    run.install("async_poller.py")
    api = start_api(run)
    log = run.log("book-sync.log")
    port = run.free_port()

    def upstream_dies() -> None:
        run.mark_failing()
        api.kill()

    return Plan(
        service="async_poller.py",
        params=blocks.service_params(
            run,
            "pino",
            logger="book-sync",
            log=log,
            noise=("retry_ok", "zero_stats"),
            url=f"http://127.0.0.1:{api.port}/v1/book?depth=20",
            output="health",
            health_port=port,
            stale_after=1.0,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"),
            logs=[log],
            process=run.pattern("async_poller.py"),
            depends_on=["book-api"],
        ),
        others=[blocks.upstream("book-api", blocks.port_open(api.port))],
        upstreams=["book-api"],
        output=run.log("book-sync.stderr"),
        trigger=upstream_dies,
    )


def sock_read_timeout_aiohttp(run: Run) -> Plan:
    run.install("async_poller.py")
    api = start_api(run)
    log = run.log("marks.log")
    beat = run.path("marks.heartbeat.json")
    return Plan(
        service="async_poller.py",
        params=blocks.service_params(
            run,
            "structlog_dict",
            logger="marks",
            log=log,
            noise=("timeout_retry", "memory_usage"),
            url=f"http://127.0.0.1:{api.port}/v1/marks",
            sock_read_timeout=0.4,
            output="heartbeat",
            heartbeat_file=str(beat),
        ),
        monitor=blocks.monitor(
            blocks.heartbeat(beat, channels={"poll": 1.5}),
            logs=[log],
            process=run.pattern("async_poller.py"),
        ),
        output=run.log("marks.stderr"),
        trigger=lambda: break_api(run, "silent"),
    )


def certificate_aiohttp(run: Run) -> Plan:
    run.install("async_poller.py")
    ca, cert, key = make_certificates(run.path("tls"))
    api = start_api(run, cert, key)
    log = run.log("custody.log")
    beat = run.path("custody.heartbeat.json")
    return Plan(
        service="async_poller.py",
        params=blocks.service_params(
            run,
            "gunicorn",
            logger="custody",
            log=log,
            noise=("deprecation", "auth_refresh"),
            url=f"https://127.0.0.1:{api.port}/v1/balances",
            ca_file=str(ca),
            output="heartbeat",
            heartbeat_file=str(beat),
        ),
        monitor=blocks.monitor(
            blocks.heartbeat(beat, channels={"poll": 1.5}),
            logs=[log],
            process=run.pattern("async_poller.py"),
        ),
        output=run.log("custody.stderr"),
        trigger=lambda: break_api(run, "self-signed"),
    )


def dns_aiohttp_syslog(run: Run) -> Plan:
    run.install("async_poller.py")
    api = start_api(run)
    log = run.log("messages")
    params = blocks.service_params(
        run,
        "syslog",
        logger="oracle",
        tag="oracle-relay",
        log=log,
        noise=("retry_ok", "disk_usage"),
        url=f"http://127.0.0.1:{api.port}/v1/index",
        output="artifacts",
        errors="line",
    )

    def dns_record_removed() -> None:
        # The deploy tool rewrites the service's parameters with the new upstream, whose name was never created.
        run.params_path.write_text(json.dumps({**params, "url": "http://oracle.prices.invalid/v1/index"}))
        run.mark_failing()
        run.stop_service_process()

    return Plan(
        service="async_poller.py",
        params=params,
        monitor=blocks.monitor(
            # A window long enough for the restarted relay to have tried its new upstream a few times.
            blocks.artifacts(run.out, "poll-*.json", window=3.0),
            logs=[log],
            process=run.pattern("async_poller.py"),
        ),
        output=run.log("oracle.stderr"),
        loop_message="oracle-relay exited ($?), restarting",
        trigger=dns_record_removed,
    )


def deadline_exceeded_zap(run: Run) -> Plan:
    run.install("feed_relay.py")
    api = start_api(run)
    log = run.log("relay.jsonl")
    ticks = run.out / "ticks.jsonl"
    return Plan(
        service="feed_relay.py",
        params=blocks.service_params(
            run,
            "zap",
            logger="relay",
            tag="relay/client.go:112",
            log=log,
            noise=("zero_stats", "slow_request"),
            url=f"http://127.0.0.1:{api.port}/v1/ticks",
            timeout=0.4,
            ticks_file=str(ticks),
        ),
        monitor=blocks.monitor(blocks.fresh_file(ticks), logs=[log], process=run.pattern("feed_relay.py")),
        output=run.log("relay.stderr"),
        trigger=lambda: break_api(run, "silent"),
    )


def refused_zap(run: Run) -> Plan:
    run.install("feed_relay.py")
    api = start_api(run)
    log = run.log("relay.jsonl")
    ticks = run.out / "ticks.jsonl"

    def upstream_dies() -> None:
        run.mark_failing()
        api.kill()

    return Plan(
        service="feed_relay.py",
        params=blocks.service_params(
            run,
            "zap",
            logger="relay",
            tag="relay/client.go:112",
            log=log,
            noise=("statsd", "zero_stats"),
            url=f"http://127.0.0.1:{api.port}/v1/ticks",
            ticks_file=str(ticks),
        ),
        monitor=blocks.monitor(
            blocks.fresh_file(ticks), logs=[log], process=run.pattern("feed_relay.py"), depends_on=["ticks-api"]
        ),
        others=[blocks.upstream("ticks-api", blocks.port_open(api.port))],
        upstreams=["ticks-api"],
        output=run.log("relay.stderr"),
        trigger=upstream_dies,
    )


SCENARIOS = [
    Scenario(
        "refused-aiohttp-pino",
        "dependency_refused",
        "Cannot connect to host",
        refused_aiohttp_pino,
        "The book API dies; aiohttp's ClientConnectorError in pino JSON lines, access lines keep coming.",
    ),
    Scenario(
        "sock-read-timeout-aiohttp",
        "upstream_timeout",
        "Timeout on reading data from socket",
        sock_read_timeout_aiohttp,
        "The marks API stops answering; aiohttp's SocketTimeoutError as a structlog dict traceback.",
    ),
    Scenario(
        "certificate-aiohttp",
        "tls_failure",
        "CERTIFICATE_VERIFY_FAILED",
        certificate_aiohttp,
        "The custody API now presents a self-signed certificate; aiohttp's ClientConnectorCertificateError.",
        requires=("openssl",),
    ),
    Scenario(
        "dns-aiohttp-syslog",
        "dns_failure",
        "oracle.prices.invalid",
        dns_aiohttp_syslog,
        "A deploy points the relay at a name that was never created; aiohttp's ClientConnectorDNSError in syslog.",
    ),
    Scenario(
        "deadline-exceeded-zap",
        "upstream_timeout",
        "context deadline exceeded",
        deadline_exceeded_zap,
        "A Go-style relay's ticks API stops answering; zap lines say the client's deadline was exceeded.",
    ),
    Scenario(
        "refused-zap",
        "dependency_refused",
        "connect: connection refused",
        refused_zap,
        "The ticks API dies; zap lines with Go's 'dial tcp ...: connect: connection refused'.",
    ),
]
