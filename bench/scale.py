"""Scale: many monitors at a 10 s interval. CPU share of one core, resident memory, schedule lateness.

Three check types, each against something real on loopback: file staleness (files in a temp dir),
a TCP port (accept-then-close listeners) and HTTP (a keep-alive server), both served by
bench/targets.py in its own process. Checks are counted where they land (requests and connections
served), so CPU per check divides by checks really made. Horus runs the mixed set at 100, 1,000 and
10,000 monitors (with the daemon's steady-state disk writes: write_bytes less cancelled_write_bytes
from /proc/<pid>/io over the window); then each check type alone at 10,000 for Horus and for monit,
for CPU per check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness import Usage, horus_daemon, horus_stats, load_targets, measure, monit_binary, monit_daemon, workdir

INTERVAL_SECONDS = 10
WARMUP_SECONDS = float(os.environ.get("HORUS_BENCH_WARMUP", 15))
WINDOW_SECONDS = float(os.environ.get("HORUS_BENCH_WINDOW", 30))
# Disk writes at 10,000 healthy monitors are measured over a window of their own once the start-up has settled
# (every monitor's first look reaches the state database and status files in the first 15-30 s).
WRITES_WINDOW_SECONDS = float(os.environ.get("HORUS_BENCH_WRITES_WINDOW", 60))
MIXED_SIZES = (100, 1_000, 10_000)
PER_TYPE_SIZE = 10_000
KINDS = ("file", "port", "http")


def _targets_for(kind: str, count: int, files: Path, ports: dict) -> list[tuple[str, str, object]]:
    out = []
    for i in range(count):
        if kind == "file":
            path = files / f"f{i}.log"
            path.write_text("x\n")
            out.append((f"file-{i}", kind, path))
        elif kind == "port":
            out.append((f"port-{i}", kind, ports["tcp"][i % len(ports["tcp"])]))
        else:
            out.append((f"http-{i}", kind, f"http://127.0.0.1:{ports['http']}/h{i}"))
    return out


def _horus_monitor(name: str, kind: str, target: object) -> dict:
    check: dict
    if kind == "file":
        check = {"type": "log_staleness", "log_file": str(target), "max_age_seconds": 3600}
    elif kind == "port":
        check = {"type": "port_open", "host": "127.0.0.1", "port": target}
    else:
        check = {"type": "http_health", "url": target}
    return {"name": name, "check": check}


def _monit_service(name: str, kind: str, target: object, http_port: int) -> str:
    if kind == "file":
        return f"check file {name} with path {target}\n    if timestamp > 3600 seconds then alert\n"
    if kind == "port":
        return f"check host {name} with address 127.0.0.1\n    if failed port {target} type tcp then alert\n"
    path = str(target).split(str(http_port), 1)[1]
    return (
        f"check host {name} with address 127.0.0.1\n"
        f'    if failed port {http_port} protocol http request "{path}" then alert\n'
    )


def _counts(work: Path) -> dict:
    return json.loads((work / "targets.json.counts").read_text())


def _checks_made(before: dict, after: dict, files: int, seconds: float) -> float:
    """Checks made during ``seconds``. The counts are published once a second, so the served rate is
    taken over the counts' own timestamps, not over the measuring window."""
    served = (after["http_requests"] - before["http_requests"]) + (after["tcp_connections"] - before["tcp_connections"])
    served_rate = served / (after["at"] - before["at"]) if after["at"] > before["at"] else 0.0
    return (served_rate + files / INTERVAL_SECONDS) * seconds  # a stat leaves no trace; each file is due once a cycle


def _measure_run(work: Path, pid: int, file_count: int) -> tuple[Usage, float]:
    import time

    time.sleep(WARMUP_SECONDS)
    before = _counts(work)
    usage = measure(pid, WINDOW_SECONDS)
    after = _counts(work)
    return usage, _checks_made(before, after, file_count, usage.wall_seconds)


def _steady_writes(pid: int) -> dict:
    usage = measure(pid, WRITES_WINDOW_SECONDS)
    return {
        "window_seconds": round(usage.wall_seconds, 1),
        "disk_write_kb_per_s": _kb_per_s(usage.write_bytes, usage.wall_seconds),
        "wchar_kb_per_s": _kb_per_s(usage.wchar, usage.wall_seconds),
    }


def horus_run(spec: list[tuple[str, int]], *, steady_writes: bool = False) -> dict:
    with workdir("horus-scale-") as work, load_targets(work) as ports:
        files = work / "files"
        files.mkdir()
        targets = [t for kind, count in spec for t in _targets_for(kind, count, files, ports)]
        config = {
            "defaults": {
                "interval_seconds": INTERVAL_SECONDS,
                "start_jitter_seconds": INTERVAL_SECONDS,
                "check_timeout_seconds": 5,
            },
            "monitors": [_horus_monitor(*t) for t in targets],
        }
        file_count = sum(count for kind, count in spec if kind == "file")
        with horus_daemon(work, config) as proc:
            usage, checks = _measure_run(work, proc.pid, file_count)
            writes = _steady_writes(proc.pid) if steady_writes else None
        stats = horus_stats(work)
        return (
            _row(usage, checks, len(targets))
            | ({"steady_writes": writes} if writes else {})
            | {
                "lateness_p50_ms": _ms(stats["lateness_seconds"]["p50"]),
                "lateness_p99_ms": _ms(stats["lateness_seconds"]["p99"]),
                "lateness_max_ms": _ms(stats["lateness_seconds"]["max"]),
                "not_healthy": {k: v for k, v in stats["statuses"].items() if k != "healthy"},
            }
        )


def monit_run(spec: list[tuple[str, int]]) -> dict:
    with workdir("monit-scale-") as work, load_targets(work) as ports:
        files = work / "files"
        files.mkdir()
        targets = [t for kind, count in spec for t in _targets_for(kind, count, files, ports)]
        services = "".join(_monit_service(*t, http_port=ports["http"]) for t in targets)
        file_count = sum(count for kind, count in spec if kind == "file")
        with monit_daemon(work, INTERVAL_SECONDS, services) as proc:
            usage, checks = _measure_run(work, proc.pid, file_count)
        return _row(usage, checks, len(targets))


def _row(usage: Usage, checks: float, monitors: int) -> dict:
    return {
        "monitors": monitors,
        "cpu_share_of_one_core": round(usage.cpu_share, 4),
        "rss_mb": round(usage.rss_max_bytes / 2**20, 1),
        "checks_per_second": round(checks / usage.wall_seconds, 1),
        "cpu_us_per_check": round(usage.cpu_seconds / checks * 1e6, 1) if checks else None,
        "expected_checks_per_second": monitors / INTERVAL_SECONDS,
        # Over the CPU window, which may still hold the tail of the start-up: see steady_writes for the goal.
        "disk_write_kb_per_s": _kb_per_s(usage.write_bytes, usage.wall_seconds),
        "wchar_kb_per_s": _kb_per_s(usage.wchar, usage.wall_seconds),
    }


def _kb_per_s(count: int | None, seconds: float) -> float | None:
    return None if count is None else round(count / 1000 / seconds, 2)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def run(_repeats: int) -> dict:
    mixed = []
    for size in MIXED_SIZES:
        third = size // 3
        spec = [("file", size - 2 * third), ("port", third), ("http", third)]
        mixed.append({"monitors": size, "horus": horus_run(spec, steady_writes=size == max(MIXED_SIZES))})
    per_type = []
    for kind in KINDS:
        row = {"check": kind, "monitors": PER_TYPE_SIZE, "horus": horus_run([(kind, PER_TYPE_SIZE)])}
        if monit_binary():
            row["monit"] = monit_run([(kind, PER_TYPE_SIZE)])
            h, m = row["horus"]["cpu_us_per_check"], row["monit"]["cpu_us_per_check"]
            row["cpu_per_check_ratio_horus_to_monit"] = round(h / m, 2) if h and m else None
        per_type.append(row)
    return {
        "scenario": "scale",
        "interval_seconds": INTERVAL_SECONDS,
        "window_seconds": WINDOW_SECONDS,
        "writes_window_seconds": WRITES_WINDOW_SECONDS,
        "mixed": mixed,
        "per_type": per_type,
    }


def table(result: dict) -> list[str]:
    lines = [
        "Horus, mixed file/port/HTTP monitors at a 10 s interval:",
        f"{'monitors':>9}  {'CPU (1 core)':>12}  {'RSS':>8}  {'checks/s':>9}  {'late p50':>9}  {'late p99':>9}",
    ]
    for row in result["mixed"]:
        h = row["horus"]
        lines.append(
            f"{row['monitors']:>9}  {h['cpu_share_of_one_core'] * 100:>11.1f}%  {h['rss_mb']:>5.1f} MB  "
            f"{h['checks_per_second']:>9.0f}  {h['lateness_p50_ms']:>6.1f} ms  {h['lateness_p99_ms']:>6.1f} ms"
        )
    for row in result["mixed"]:
        steady = row["horus"].get("steady_writes")
        if steady and steady["disk_write_kb_per_s"] is not None:
            unwell = row["horus"]["not_healthy"]
            healthy = f"not healthy: {unwell}" if unwell else "all healthy"
            lines.append(
                f"Steady-state disk writes at {row['monitors']:,} monitors ({healthy}): "
                f"{steady['disk_write_kb_per_s']:.1f} KB/s (write_bytes), {steady['wchar_kb_per_s']:.2f} KB/s "
                f"passed to write(), over {steady['window_seconds']:.0f} s after the start-up"
            )
    lines += [
        "",
        f"CPU per check, {PER_TYPE_SIZE:,} monitors of one type:",
        f"{'check':>6}  {'Horus':>10}  {'monit':>10}  {'ratio':>6}  {'Horus RSS':>10}  {'monit RSS':>10}",
    ]
    for row in result["per_type"]:
        h, m = row["horus"], row.get("monit")
        monit = f"{m['cpu_us_per_check']:>7.1f} µs" if m else f"{'n/a':>10}"
        ratio = f"{row['cpu_per_check_ratio_horus_to_monit']:>5.2f}x" if m else f"{'':>6}"
        monit_rss = f"{m['rss_mb']:>7.1f} MB" if m else f"{'n/a':>10}"
        horus = f"{h['cpu_us_per_check']:>7.1f} µs"
        lines.append(f"{row['check']:>6}  {horus}  {monit}  {ratio}  {h['rss_mb']:>7.1f} MB  {monit_rss}")
    return lines
