"""Upstream APIs that refuse, fail, throttle, reject a key, time out, present a bad certificate, or vanish
from DNS, seen by a synchronous poller using requests, httpx, urllib, botocore or google-api-core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Helper, Plan, Run, Scenario


def start_api(run: Run, *certs: Path) -> Helper:
    return run.helper("stub_api.py", str(run.path("api.mode")), *map(str, certs), ready="api.port")


def break_api(run: Run, mode: str) -> None:
    run.mark_failing()
    run.path("api.mode").write_text(mode)


def poller(run: Run) -> None:
    run.install("poller.py", "healthcheck.py")


def refused_requests(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("quotes.log")
    pattern = run.pattern("poller.py")

    def upstream_dies() -> None:
        run.mark_failing()
        api.kill()

    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="quotes",
            log=log,
            noise=("retry_ok", "zero_stats", "statsd", "deprecation"),
            loud_after=["queue_depth", "sentry"],
            client="requests",
            url=f"http://127.0.0.1:{api.port}/v1/quotes",
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "poll-*.json"),
            logs=[log],
            process=pattern,
            heal=blocks.kill(pattern),
            depends_on=["quotes-api"],
        ),
        others=[blocks.upstream("quotes-api", blocks.port_open(api.port))],
        upstreams=["quotes-api"],
        output=run.log("quotes.stderr"),
        trigger=upstream_dies,
    )


def upstream_503_uvicorn(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("pricer.log")
    port = run.free_port()
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "uvicorn",
            logger="uvicorn.error",
            log=log,
            noise=("slow_request", "zero_stats"),
            client="requests",
            url=f"http://127.0.0.1:{api.port}/v1/book",
            health_port=port,
            stale_after=1.0,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"),
            logs=[log],
            process=run.pattern("poller.py"),
            depends_on=["pricing-api"],
        ),
        others=[blocks.upstream("pricing-api", blocks.http(f"http://127.0.0.1:{api.port}/health"))],
        upstreams=["pricing-api"],
        output=run.log("pricer.stderr"),
        trigger=lambda: break_api(run, "503"),
    )


def upstream_refused_silently(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("ticker.log")

    def upstream_dies() -> None:
        run.mark_failing()
        api.kill()

    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="ticker",
            log=log,
            noise=("deprecation", "memory_usage"),
            client="urllib",
            url=f"http://127.0.0.1:{api.port}/v1/ticker",
            errors="silent",
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "poll-*.json"),
            logs=[log],
            process=run.pattern("poller.py"),
            depends_on=["pricing-feed"],
        ),
        others=[blocks.upstream("pricing-feed", blocks.port_open(api.port))],
        upstreams=["pricing-feed"],
        output=run.log("ticker.stderr"),
        trigger=upstream_dies,
    )


def rate_limited_requests(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("orders.log")
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="orders",
            log=log,
            noise=("zero_stats", "rate_headers", "retry_ok", "oom_in_path"),
            loud_after=["gc_pause", "ws_late"],
            client="requests",
            url=f"http://127.0.0.1:{api.port}/v1/orders",
        ),
        monitor=blocks.monitor(blocks.artifacts(run.out, "poll-*.json"), logs=[log], process=run.pattern("poller.py")),
        output=run.log("orders.stderr"),
        trigger=lambda: break_api(run, "429"),
    )


def throttled_after_unrelated_deploy(run: Run) -> Plan:
    poller(run)
    # Deployed eight minutes ago (a docs-only commit), healthy since: the change is not the cause.
    blocks.version(run, [("poller: first version", 9 * 86400), ("docs: describe the retry policy", 480)])
    api = start_api(run)
    log = run.log("marks.log")
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="marks",
            log=log,
            noise=("rate_headers", "deprecation"),
            loud_after=["ws_late"],
            client="urllib",
            url=f"http://127.0.0.1:{api.port}/v1/marks",
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "poll-*.json"), logs=[log], process=run.pattern("poller.py"), work_tree=run.app
        ),
        output=run.log("marks.stderr"),
        trigger=lambda: break_api(run, "429"),
    )


def throttled_kinesis_botocore(run: Run) -> Plan:
    poller(run)
    run.vendor("botocore")
    api = start_api(run)
    log = run.log("fills-shipper.log")
    status = run.out / "status.json"
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="fills_shipper",
            log=log,
            noise=("zero_stats", "auth_refresh"),
            loud_after=["queue_depth"],
            client="botocore",
            url=f"http://127.0.0.1:{api.port}/",
            output="status_file",
            status_file=str(status),
        ),
        monitor=blocks.monitor(blocks.fresh_file(status), logs=[log], process=run.pattern("poller.py")),
        output=run.log("fills-shipper.stderr"),
        trigger=lambda: break_api(run, "aws-throttle"),
    )


def quota_google_api_core(run: Run) -> Plan:
    poller(run)
    run.vendor("google")
    api = start_api(run)
    log = run.log("sheets-export.log")
    status = run.out / "status.json"
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "jsonlogger",
            logger="sheets_export",
            log=log,
            noise=("zero_stats", "deprecation"),
            client="google",
            url=f"http://127.0.0.1:{api.port}/v4/spreadsheets/1xQ/values/Fills!A1:append",
            output="status_file",
            status_file=str(status),
        ),
        monitor=blocks.monitor(
            blocks.command([sys.executable, str(run.app / "healthcheck.py"), str(status), "1.5"]),
            logs=[log],
            process=run.pattern("poller.py"),
        ),
        output=run.log("sheets-export.stderr"),
        trigger=lambda: break_api(run, "gcp-quota"),
    )


def rate_limited_httpx_syslog(run: Run) -> Plan:
    poller(run)
    run.vendor("httpx")
    api = start_api(run)
    log = run.log("syslog")
    port = run.free_port()
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "syslog",
            logger="fills",
            tag="fills-sync",
            log=log,
            noise=("rate_headers", "zero_stats"),
            client="httpx",
            url=f"http://127.0.0.1:{api.port}/v1/fills?since=1795227000",
            health_port=port,
            stale_after=1.0,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"), logs=[log], process=run.pattern("poller.py")
        ),
        output=run.log("fills-sync.stderr"),
        trigger=lambda: break_api(run, "429"),
    )


def revoked_key_structlog(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("positions.log")
    status = run.out / "positions.json"
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="positions",
            log=log,
            noise=("auth_refresh", "zero_stats"),
            client="requests",
            url=f"http://127.0.0.1:{api.port}/v1/positions",
            output="status_file",
            status_file=str(status),
        ),
        monitor=blocks.monitor(blocks.fresh_file(status), logs=[log], process=run.pattern("poller.py")),
        output=run.log("positions.stderr"),
        trigger=lambda: break_api(run, "401"),
    )


def expired_token_botocore(run: Run) -> Plan:
    poller(run)
    run.vendor("botocore")
    api = start_api(run)
    log = run.log("stream-reader.log")
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="stream_reader",
            log=log,
            noise=("auth_refresh", "deprecation", "oom_in_path"),
            loud_after=["sentry", "gc_pause"],
            client="botocore",
            operation="get_records",
            url=f"http://127.0.0.1:{api.port}/",
        ),
        monitor=blocks.monitor(blocks.artifacts(run.out, "poll-*.json"), logs=[log], process=run.pattern("poller.py")),
        output=run.log("stream-reader.stderr"),
        trigger=lambda: break_api(run, "aws-expired"),
    )


def read_timeout_requests(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("depth.log")
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "basic",
            logger="depth",
            log=log,
            noise=("timeout_retry", "zero_stats"),
            client="requests",
            timeout=0.4,
            url=f"http://127.0.0.1:{api.port}/v1/depth?market=ETH-PERP",
        ),
        monitor=blocks.monitor(blocks.artifacts(run.out, "poll-*.json"), logs=[log], process=run.pattern("poller.py")),
        output=run.log("depth.stderr"),
        trigger=lambda: break_api(run, "silent"),
    )


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and a self-signed one (self.pem/self.key)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Desk Internal CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out", "self.pem", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def self_signed_requests(run: Run) -> Plan:
    poller(run)
    ca, cert, key = make_certificates(run.path("tls"))
    api = start_api(run, cert, key)
    log = run.log("settlement-feed.log")
    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="settlement_feed",
            log=log,
            noise=("retry_ok", "deprecation"),
            loud_after=["ws_late"],
            client="requests",
            verify=str(ca),
            url=f"https://127.0.0.1:{api.port}/v1/settlements",
        ),
        monitor=blocks.monitor(blocks.artifacts(run.out, "poll-*.json"), logs=[log], process=run.pattern("poller.py")),
        output=run.log("settlement-feed.stderr"),
        trigger=lambda: break_api(run, "self-signed"),
    )


def dns_requests(run: Run) -> Plan:
    poller(run)
    api = start_api(run)
    log = run.log("funding.log")
    discovery = run.path("funding-api.url")
    discovery.write_text(f"http://127.0.0.1:{api.port}")

    def name_moves() -> None:
        # consul-template rewrote the discovery file with a name that no longer resolves.
        run.mark_failing()
        discovery.write_text("http://funding.exchange-int.invalid:8443")

    return Plan(
        service="poller.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="funding",
            log=log,
            noise=("retry_ok", "memory_usage"),
            loud_after=["queue_depth", "gc_pause"],
            client="requests",
            url_file=str(discovery),
            path="/v1/funding",
        ),
        monitor=blocks.monitor(blocks.artifacts(run.out, "poll-*.json"), logs=[log], process=run.pattern("poller.py")),
        output=run.log("funding.stderr"),
        trigger=name_moves,
    )


SCENARIOS = [
    Scenario(
        "refused-requests",
        "dependency_refused",
        "/v1/quotes",
        refused_requests,
        "The quotes API dies; requests' ConnectionError (refused) repeats, beside a statsd refusal that "
        "repeated all through the healthy period.",
    ),
    Scenario(
        "upstream-503-uvicorn",
        "dependency_refused",
        "503",
        upstream_503_uvicorn,
        "The pricing API answers 503; the service's own /health turns 503 and its access lines keep coming.",
    ),
    Scenario(
        "upstream-refused-silently",
        "dependency_refused",
        "pricing-feed",
        upstream_refused_silently,
        "The feed dies and the service swallows the error: only the upstream monitor's state says why.",
    ),
    Scenario(
        "rate-limited-requests",
        "rate_limited",
        "429 Client Error",
        rate_limited_requests,
        "The orders API answers 429; healthy lines said '0 errors, 0 throttled requests' all along.",
    ),
    Scenario(
        "throttled-after-unrelated-deploy",
        "rate_limited",
        "HTTP Error 429",
        throttled_after_unrelated_deploy,
        "urllib's HTTPError 429, eight minutes after a docs-only deploy that restarted the service.",
        requires=("git",),
    ),
    Scenario(
        "throttled-kinesis-botocore",
        "rate_limited",
        "ThrottlingException",
        throttled_kinesis_botocore,
        "Kinesis throttles PutRecords; botocore gives up after four retries, logged by structlog as JSON.",
    ),
    Scenario(
        "quota-google-api-core",
        "rate_limited",
        "Quota exceeded",
        quota_google_api_core,
        "The Sheets API's per-minute quota is exhausted (google.api_core TooManyRequests), python-json-logger.",
    ),
    Scenario(
        "rate-limited-httpx-syslog",
        "rate_limited",
        "429 Too Many Requests",
        rate_limited_httpx_syslog,
        "httpx's HTTPStatusError for a 429, in a syslog file where the traceback's newlines are #012.",
    ),
    Scenario(
        "revoked-key-structlog",
        "auth_failure",
        "401 Client Error: Unauthorized",
        revoked_key_structlog,
        "The API key is revoked: requests' HTTPError 401, in structlog JSON lines.",
    ),
    Scenario(
        "expired-token-botocore",
        "auth_failure",
        "ExpiredTokenException",
        expired_token_botocore,
        "The role's session token expires: botocore's ClientError on GetRecords.",
    ),
    Scenario(
        "read-timeout-requests",
        "upstream_timeout",
        "Read timed out",
        read_timeout_requests,
        "The depth API stops answering; requests' ReadTimeout, beside retried timeouts while healthy.",
    ),
    Scenario(
        "self-signed-requests",
        "tls_failure",
        "CERTIFICATE_VERIFY_FAILED",
        self_signed_requests,
        "The API's certificate is replaced by a self-signed one; requests' SSLError.",
        requires=("openssl",),
    ),
    Scenario(
        "dns-requests",
        "dns_failure",
        "funding.exchange-int.invalid",
        dns_requests,
        "Service discovery points at a name that no longer resolves; urllib3's NameResolutionError.",
    ),
]
