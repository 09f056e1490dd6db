"""`make demo`: Horus catches the seed story's hung bot, heals it, and confirms it recovered.

Everything runs in a temporary directory on loopback and stops by itself within two minutes; every
process it started is stopped and the directory removed however it ends (done, failed, Ctrl-C, SIGTERM):
  - a trading bot kept alive by a restart loop, which logs and then hangs with its process alive;
  - a second bot instrumented with horus-sdk (examples/sdk/bot.py), whose order call hangs too: its own
    watchdog records where it was stuck and ends it, and Horus restarts it and says why;
  - a healthy dashboard, and an exchange API that accepts connections and never answers;
  - a trading bot behind horus-sdk's kill switch (examples/sdk/trading_bot.py) on a paper exchange
    (examples/exchange/paper_exchange.py): the exchange rejects a burst of its orders, the bot trips, closes
    its position and halts by itself, Horus reports it, `horus control trading-desk resume` brings it back,
    and the exchange's own order log shows that not one order was sent while it was halted;
  - `horus run` watching all five, its events shown as they happen.
"""

from __future__ import annotations

import contextlib
import importlib.util
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
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
SDK_BOT = HERE.parent / "sdk" / "bot.py"
TRADING_BOT = HERE.parent / "sdk" / "trading_bot.py"
PAPER_EXCHANGE = HERE.parent / "exchange" / "paper_exchange.py"
sys.path.insert(0, str(HERE))
from servers import start_dashboard, start_silent_api  # noqa: E402

from horus_sdk.control_files import DECISION_LOG_FILE, read_status  # noqa: E402

# The demo gives up (exit 1) when it has not seen both heals and recoveries by then; tests shorten it.
DEMO_DEADLINE_SECONDS = float(os.environ.get("HORUS_DEMO_DEADLINE_SECONDS", "100"))
LINGER_AFTER_RECOVERY_SECONDS = 4
# The trading bot's trips: this many rejects in its window allow only orders that reduce its position, and
# HALT_AFTER close the position and halt it. The exchange rejects exactly HALT_AFTER orders.
REDUCE_AFTER, HALT_AFTER = 3, 5
FILLS_BEFORE_THE_BURST = 4
FIRST_LOOK_SECONDS = 2.0
REJECT_REASON = "insufficient margin (injected by the demo)"
SYMBOL = "BTC-USD"  # the trading bot's default
RESUME_REASON = "demo: the rejects were injected"

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
  - name: trading-desk
    # Three failed looks (2 s) before the heal: by then the bot has long finished its own flatten, so the
    # heal's command meets a bot that is flat and halted. It asks for a flatten all the same: had the bot
    # not tripped by itself (a stuck loop), Horus's command would leave it flat and halted.
    min_failures_to_heal: 3
    heal_cooldown_seconds: 60
    check: {{type: trading, control_dir: "{desk}", max_cycle_age_seconds: 5}}
    heal: {{action: halt, control_dir: "{desk}", flatten: true}}
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
    desk, desk_log = workdir / "trading-desk", workdir / "trading-desk.log"
    config.write_text(
        CONFIG.format(
            log=log_file,
            dashboard_port=dashboard_port,
            api_port=api_port,
            sdk_state=sdk_state,
            sdk_log=sdk_log,
            python=sys.executable,
            sdk_bot=SDK_BOT,
            desk=desk,
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
    exchange = _load_paper_exchange().PaperExchange(order_log=workdir / "exchange-orders.jsonl").start()
    cleanup.callback(exchange.stop)
    say(
        f"starting a paper exchange and a trading bot behind horus-sdk's kill switch; it trips after {REDUCE_AFTER} "
        f"rejects (only orders that reduce its position) and {HALT_AFTER} (flatten and halt)"
    )
    with _uninterrupted():
        trips = ["--reduce-after", str(REDUCE_AFTER), "--halt-after", str(HALT_AFTER)]
        where = ["--exchange", exchange.url, "--control", str(desk), "--log", str(desk_log)]
        trading_bot = subprocess.Popen([sys.executable, str(TRADING_BOT), *where, *trips], stdin=subprocess.DEVNULL)
        cleanup.callback(_stop_process, trading_bot)
    commands = _Commands()
    cleanup.callback(commands.stop)
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
    seen = {name: threading.Event() for name in _SEEN}
    threading.Thread(target=_relay, args=(horus, seen), daemon=True).start()
    deadline = time.monotonic() + DEMO_DEADLINE_SECONDS
    act = _TradingDeskAct(exchange, desk, desk_log, config, seen, commands, deadline)
    threading.Thread(target=act.run, name="trading-desk-act", daemon=True).start()
    ok = False
    try:
        if _wait(seen["healed"], deadline):
            say("Horus sent SIGTERM to the hung bot; the restart loop brings it back")
            if _wait(seen["recovered"], deadline) and _wait(seen["sdk_recovered"], deadline):
                say("both bots work again")
                if _wait(act.finished, deadline) and act.failure is None:
                    say(f"watching {LINGER_AFTER_RECOVERY_SECONDS} s more: Horus leaves every service alone")
                    time.sleep(LINGER_AFTER_RECOVERY_SECONDS)
                    ok = True
    finally:
        bot_log_before_stop = log_file.read_text() if log_file.exists() else ""
        _close(cleanup)  # Horus first, then the bots; the results below are read from finished files
    if ok:
        say(
            "done: both hangs detected, both bots healed, recovery confirmed; the trading bot halted itself and "
            "sent nothing until it was resumed. The first bot's log, scan lines folded:"
        )
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
    if act.failure is not None:
        say(f"the trading desk act went wrong: {act.failure}")
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


_SEEN = ("started", "healed", "recovered", "sdk_healed", "sdk_recovered", "desk_trip", "desk_healed", "desk_recovered")


_LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d),\d+")  # logging's asctime: the date goes


def _episode(log_text: str) -> list[str]:
    """The trading bot's log from its first rejected order to its first order sent after a resume, with the
    orders its gate denied folded after the first one, and times without their date."""
    out: list[str] = []
    denied = 0
    resumed = False
    for line in log_text.splitlines():
        if not out and "ORDER rejected" not in line:
            continue
        line = _LOG_TIME.sub(r"\1", line)
        if "ORDER denied" in line:
            denied += 1
            if denied > 1:
                continue
        elif denied > 1:
            out.append(f"... {denied - 1} more order(s) denied the same way ...")
            denied = 0
        out.append(line)
        resumed = resumed or "command=resume" in line
        if resumed and "ORDER sent" in line:
            break
    return out


def _relay(horus: subprocess.Popen[str], seen: dict[str, threading.Event]) -> None:
    assert horus.stdout is not None
    for line in horus.stdout:
        print(line, end="", flush=True)
        if "horus.started" in line:
            seen["started"].set()
        if re.search(r"check\.failed monitor=trading-desk reason='trip ", line):
            seen["desk_trip"].set()
        if "heal.finished" in line and "trading-desk" in line:
            seen["desk_healed"].set()
        if re.search(r"monitor\.recovered.*trading-desk", line) and seen["desk_healed"].is_set():
            seen["desk_recovered"].set()
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


def _stop_process(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _load_paper_exchange() -> ModuleType:
    """The paper exchange, loaded by its path: the examples are scripts, not a package."""
    spec = importlib.util.spec_from_file_location("paper_exchange", PAPER_EXCHANGE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PAPER_EXCHANGE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules while they are built
    spec.loader.exec_module(module)
    return module


class _ActStopped(Exception):
    """The trading desk act cannot go on; the message says why, for the demo's last words."""


class _Commands:
    """Runs `horus control` for the act's thread. Once the demo stops it runs nothing more, and ends what
    runs, so that no command outlives the demo (signal handlers, which hold off Ctrl-C while a process is
    started, belong to the main thread only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._running: subprocess.Popen[str] | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def run(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """(exit code, output) of ``argv``."""
        with self._lock:
            if self._stopped:
                raise _ActStopped("the demo is stopping")
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            self._running = process
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise _ActStopped(f"{' '.join(argv[2:4])} did not finish within {timeout:g} s: {output}") from None
        finally:
            with self._lock:
                self._running = None
        return process.returncode, output

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            process = self._running
        if process is not None and process.poll() is None:
            process.kill()  # the act's thread, in communicate(), reaps it


class _TradingDeskAct:
    """The kill switch, told in its own thread while the other acts run: a burst of rejects, the bot's own
    trip, flatten and halt, Horus's report, the operator's resume, and the exchange's proof."""

    def __init__(
        self,
        exchange: Any,
        control_dir: Path,
        bot_log: Path,
        config: Path,
        seen: dict[str, threading.Event],
        commands: _Commands,
        deadline: float,
    ) -> None:
        self.exchange = exchange
        self.control_dir = control_dir
        self.bot_log = bot_log
        self.config = config
        self.seen = seen
        self.commands = commands
        self.deadline = deadline
        self.finished = threading.Event()
        self.failure: str | None = None

    def run(self) -> None:
        try:
            self._tell()
        except _ActStopped as stopped:
            self.failure = str(stopped)
        except Exception as exc:  # the act must end and say why, whatever broke in it
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished.set()

    def _tell(self) -> None:
        self._until(self.seen["started"].is_set, "Horus did not start")
        # Horus logs no healthy look; its first look at every monitor comes within its first second (the
        # interval, 1 s, with 0.2 s of jitter), and that look must see the bot well for the trip to be news.
        horus_looked = time.monotonic() + FIRST_LOOK_SECONDS
        self._until(lambda: time.monotonic() >= horus_looked, "Horus did not look at the trading bot")
        self._until(
            lambda: len(self._fills()) >= FILLS_BEFORE_THE_BURST and self._position() > 0,
            "the trading bot did not trade",
        )
        say(
            f"trading desk: the bot has had {len(self._fills())} orders filled and holds {self._position():g} "
            f"{SYMBOL}; the exchange now rejects its next {HALT_AFTER} orders ({REJECT_REASON})"
        )
        burst_at = time.time()
        self.exchange.inject("reject", count=HALT_AFTER, reason=REJECT_REASON)

        self._until(lambda: self._status().get("mode") == "halted", "the trading bot did not halt itself")
        halted_at = self._mode_changed_to("halted", after=burst_at)
        status = self._status()
        path = " -> ".join(m.upper() for m in self._modes_since(burst_at))
        say(
            f"trading desk: the bot tripped by itself, {path}: {status.get('cause', {}).get('reason')}. "
            f"Its position on the exchange: {self._position():g} {SYMBOL}" + (" (flat)" if not self._position() else "")
        )
        self._until(self.seen["desk_trip"].is_set, "Horus did not report the trip")
        self._until(self.seen["desk_healed"].is_set, "Horus's halt heal did not finish")
        say("trading desk: Horus reported the trip, and the bot acknowledged its heal; an operator looks, and resumes:")
        argv = [sys.executable, "-m", "horus", "control", "trading-desk", "resume", "--reason", RESUME_REASON]
        print(f"    $ horus control trading-desk resume --reason {RESUME_REASON!r} -c {self.config}", flush=True)
        code, output = self.commands.run([*argv, "-c", str(self.config)], timeout=30)
        for line in output.splitlines():
            print(f"    {line}", flush=True)
        if code != 0:
            raise _ActStopped(f"horus control exited with {code}")

        resumed_at = self._mode_changed_to("active", after=halted_at)
        self._until(lambda: any(e["at"] > resumed_at for e in self._fills()), "the bot did not trade again")
        say("trading desk: the bot trades again, the same process: resuming needed no restart")
        self._until(self.seen["desk_recovered"].is_set, "Horus did not see trading-desk recover")

        orders = self.exchange.orders_received()
        before = sum(1 for e in orders if e["at"] <= halted_at)
        during = sum(1 for e in orders if halted_at < e["at"] < resumed_at)
        after = sum(1 for e in orders if e["at"] >= resumed_at)
        refused = sum(
            1
            for record in self._decisions()
            if record.get("kind") == "signal"
            and halted_at < record.get("at", 0) < resumed_at
            and not (record.get("permit") or {}).get("allowed", True)
        )
        say("trading desk: the bot's own log of it, from the first reject to the first order after the resume:")
        for line in _episode(self.bot_log.read_text() if self.bot_log.exists() else ""):
            print(f"    {line}", flush=True)
        say(
            f"trading desk, the exchange's own order log: {before} orders before the halt, {during} orders while "
            f"halted ({resumed_at - halted_at:.1f} s, in which the bot's gate refused {refused} orders), "
            f"{after} after the resume"
        )
        if during:
            raise _ActStopped(f"{during} orders reached the exchange while the bot was halted")

    # -- what the act looks at ----------------------------------------------------------------------------

    def _until(self, condition: Callable[[], bool], failure: str) -> None:
        """Wait for ``condition`` (polled: it is a file or the exchange's book); _ActStopped past the deadline."""
        while not condition():
            if self.commands.stopped:
                raise _ActStopped("the demo is stopping")
            if time.monotonic() > self.deadline:
                raise _ActStopped(f"{failure} in time")
            time.sleep(0.05)

    def _fills(self) -> list[dict[str, Any]]:
        return [e for e in self.exchange.orders_received() if e["outcome"] in ("filled", "partially_filled")]

    def _position(self) -> float:
        return float(self.exchange.positions().get(SYMBOL, 0.0))

    def _status(self) -> dict[str, Any]:
        try:
            return read_status(self.control_dir)
        except (OSError, ValueError):
            return {}

    def _decisions(self) -> list[dict[str, Any]]:
        """The bot's decision log, which records each change of mode with its time."""
        try:
            text = (self.control_dir / DECISION_LOG_FILE).read_text()
        except OSError:
            return []
        records = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def _modes_since(self, moment: float) -> list[str]:
        return [
            str(r.get("mode")) for r in self._decisions() if r.get("kind") == "control.mode" and r.get("at", 0) > moment
        ]

    def _mode_changed_to(self, mode: str, *, after: float) -> float:
        """When the bot's mode became ``mode``, after ``after``, by its decision log."""
        for record in self._decisions():
            if record.get("kind") == "control.mode" and record.get("mode") == mode and record.get("at", 0) > after:
                return float(record["at"])
        raise _ActStopped(f"the bot's decision log has no change to {mode.upper()}")


if __name__ == "__main__":
    sys.exit(main())
