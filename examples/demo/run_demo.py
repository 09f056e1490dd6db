"""`make demo`: Horus catches the seed story's hung bot, heals it, and confirms it recovered.

Everything runs in a temporary directory on loopback and stops by itself within two minutes; every
process it started is stopped and the directory removed however it ends (done, failed, Ctrl-C, SIGTERM):
  - a trading bot kept alive by a restart loop, which logs and then hangs with its process alive;
  - a second bot instrumented with horus-sdk (examples/sdk/bot.py), whose order call hangs too: its own
    watchdog records where it was stuck and ends it, and Horus restarts it and says why;
  - a healthy dashboard, and an exchange API that accepts connections and never answers;
  - `horus run` watching all four, its events shown as they happen.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDK_BOT = HERE.parent / "sdk" / "bot.py"
sys.path.insert(0, str(HERE))
from servers import start_dashboard, start_silent_api  # noqa: E402

# The demo gives up (exit 1) when it has not seen both heals and recoveries by then; tests shorten it.
DEMO_DEADLINE_SECONDS = float(os.environ.get("HORUS_DEMO_DEADLINE_SECONDS", "100"))
LINGER_AFTER_RECOVERY_SECONDS = 4

CONFIG = """\
# Written by examples/demo/run_demo.py
defaults:
  interval_seconds: 1
  start_jitter_seconds: 0.2
sentinel:
  reopen_within_seconds: 2   # incidents close (and write their post-mortem) after 2 s of health
monitors:
  - name: trading-bot
    min_failures_to_heal: 2
    heal_cooldown_seconds: 30
    startup_grace_seconds: 5
    check: {{type: log_staleness, log_file: "{log}", max_age_seconds: 3}}
    heal: {{action: kill_process, process_pattern: "demo_bot.py --mode conservative --log {log}",
           signal: SIGTERM,
           grace_seconds: 3, max_matches: 1}}
  - name: sdk-bot
    min_failures_to_heal: 2
    heal_cooldown_seconds: 30
    startup_grace_seconds: 5
    check: {{type: heartbeat, path: "{sdk_state}/heartbeat.json", max_age_seconds: 2, channels: {{orders: 10}},
            crash_dir: "{sdk_state}"}}
    heal: {{action: run_script, shell: true,
           command: "{python} {sdk_bot} --state {sdk_state} --kill-after 3 >> {sdk_log} 2>&1 &"}}
  - name: dashboard
    check: {{type: http_health, url: "http://127.0.0.1:{dashboard_port}/health", json_equals: {{status: ok}}}}
  - name: exchange-api
    interval_seconds: 5
    check_timeout_seconds: 2
    check: {{type: http_health, url: "http://127.0.0.1:{api_port}/v1/ping"}}
"""


def say(message: str) -> None:
    print(f"\033[1m[demo]\033[0m {message}" if sys.stdout.isatty() else f"[demo] {message}", flush=True)


def main() -> int:
    # SIGTERM (from `timeout`, CI or a closed terminal) unwinds like Ctrl-C, through every cleanup below.
    signal.signal(signal.SIGTERM, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="horus-demo-"))
    cleanup = contextlib.ExitStack()  # stops each process the demo started, newest first
    try:
        return _demo(workdir, cleanup)
    except KeyboardInterrupt:
        say("interrupted: stopping everything the demo started and removing its directory")
        return 130
    finally:
        _close(cleanup)
        # Processes are stopped before their files are removed, so nothing writes into a removed directory.
        shutil.rmtree(workdir, ignore_errors=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _close(cleanup: contextlib.ExitStack) -> None:
    """Run the cleanups with Ctrl-C and SIGTERM held off: a second Ctrl-C must not leave a bot running."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cleanup.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _demo(workdir: Path, cleanup: contextlib.ExitStack) -> int:
    log_file = workdir / "bot.log"
    _dashboard, dashboard_port = start_dashboard()
    _api, api_port = start_silent_api()
    config = workdir / "horus.yaml"
    sdk_state, sdk_log = workdir / "sdk-bot", workdir / "sdk-bot.log"
    config.write_text(
        CONFIG.format(
            log=log_file,
            dashboard_port=dashboard_port,
            api_port=api_port,
            sdk_state=sdk_state,
            sdk_log=sdk_log,
            python=sys.executable,
            sdk_bot=SDK_BOT,
        )
    )
    say(f"working in {workdir}")
    say("starting the bot under a restart loop (it restarts the bot only when it exits)")
    with _uninterrupted():
        keepalive = subprocess.Popen(
            ["/bin/sh", str(HERE / "keepalive.sh"), sys.executable, str(HERE / "demo_bot.py"), str(log_file)],
            start_new_session=True,
        )
        cleanup.callback(_stop_keepalive, keepalive)
    say("starting the horus-sdk bot; its order call will hang at once, with no deadline")
    with sdk_log.open("ab") as sink, _uninterrupted():
        sdk_bot = subprocess.Popen(
            [sys.executable, str(SDK_BOT), "--state", str(sdk_state), "--hang-orders", "--kill-after", "3"],
            stdout=sink,
            stderr=sink,
        )
        cleanup.callback(_stop_sdk_bot, sdk_bot, sdk_state)
    say("starting `horus run`; the first bot will hang on an order call in about 4 s, with its process alive")
    with _uninterrupted():
        horus = subprocess.Popen(
            [sys.executable, "-m", "horus", "run", "-c", str(config), "--state-dir", str(workdir / "state")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        cleanup.callback(_stop_horus, horus)
    seen = {name: threading.Event() for name in ("healed", "recovered", "sdk_healed", "sdk_recovered")}
    threading.Thread(target=_relay, args=(horus, seen), daemon=True).start()
    deadline = time.monotonic() + DEMO_DEADLINE_SECONDS
    ok = False
    try:
        if _wait(seen["healed"], deadline):
            say("Horus sent SIGTERM to the hung bot; the restart loop brings it back")
            if _wait(seen["recovered"], deadline) and _wait(seen["sdk_recovered"], deadline):
                say(f"both bots work again; watching {LINGER_AFTER_RECOVERY_SECONDS} s more: Horus leaves them alone")
                time.sleep(LINGER_AFTER_RECOVERY_SECONDS)
                ok = True
    finally:
        bot_log_before_stop = log_file.read_text() if log_file.exists() else ""
        _close(cleanup)  # Horus first, then the bots; the results below are read from finished files
    if ok:
        say("done: both hangs detected, both bots healed, recovery confirmed. The first bot's log, scan lines folded:")
        for line in _fold_scans(bot_log_before_stop):
            print(f"    {line}")
        for record in sorted(sdk_state.glob("horus-crash-*.json")):
            say(f"the horus-sdk bot's own crash record, {record.name}, says where it was stuck:")
            stuck = json.loads(record.read_text()).get("stuck") or {}
            where = f"{Path(str(stuck.get('file'))).name}:{stuck.get('line')}"
            print(f"    {stuck.get('function')} at {where}: {stuck.get('code')}")
        postmortems = sorted((workdir / "state" / "postmortems").glob("*sdk-bot*.md"))
        if postmortems:
            say(f"and Sentinel's post-mortem of that incident, {postmortems[0].name}:")
            for line in postmortems[0].read_text().split("## Timeline")[0].splitlines():
                if line.strip():
                    print(f"    {line}")
        return 0
    say("the demo did not see a heal and a recovery in time; see the events above")
    return 1


def _fold_scans(log_text: str) -> list[str]:
    """The bot's story without its repetitive scan lines: started, placing an order, SIGTERM, started."""
    out: list[str] = []
    scans = 0
    for line in log_text.splitlines():
        if " scan " in line:
            scans += 1
            continue
        if scans:
            out.append(f"... {scans} scan lines ...")
            scans = 0
        out.append(line)
    if scans:
        out.append(f"... {scans} scan lines ...")
    return out


def _relay(horus: subprocess.Popen[str], seen: dict[str, threading.Event]) -> None:
    assert horus.stdout is not None
    for line in horus.stdout:
        print(line, end="", flush=True)
        if "heal.finished" in line and "trading-bot" in line:
            seen["healed"].set()
        if re.search(r"monitor\.recovered.*trading-bot", line) and seen["healed"].is_set():
            seen["recovered"].set()
        if "heal.finished" in line and "sdk-bot" in line:
            seen["sdk_healed"].set()
        if re.search(r"monitor\.recovered.*sdk-bot", line) and seen["sdk_healed"].is_set():
            seen["sdk_recovered"].set()


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C or SIGTERM waits until a process just started has its clean-up registered: one that
    arrived in between would leave that process running after the demo. (Held back by a handler, not by
    blocking the signal: a blocked signal would stay blocked in the child too.)"""
    arrived: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: arrived.append(signum)) for sig in _INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in arrived[:1]:
            signal.raise_signal(signum)


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def _stop_sdk_bot(first: subprocess.Popen[bytes], state: Path) -> None:
    """The hung one ended itself; the one Horus started is found through its heartbeat's pid."""
    with contextlib.suppress(ProcessLookupError):
        first.kill()
    first.wait(timeout=10)
    with contextlib.suppress(OSError, ValueError, KeyError, ProcessLookupError):
        os.kill(int(json.loads((state / "heartbeat.json").read_text())["pid"]), signal.SIGTERM)


def _wait(event: threading.Event, deadline: float) -> bool:
    return event.wait(max(0.0, deadline - time.monotonic()))


def _stop_horus(horus: subprocess.Popen[str]) -> None:
    horus.send_signal(signal.SIGTERM)
    try:
        horus.wait(timeout=10)
    except subprocess.TimeoutExpired:
        horus.kill()
        horus.wait(timeout=10)


def _stop_keepalive(keepalive: subprocess.Popen[bytes]) -> None:
    # The restart loop and the bot share a process group of their own.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(keepalive.pid, signal.SIGTERM)
    try:
        keepalive.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keepalive.pid, signal.SIGKILL)
        keepalive.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
