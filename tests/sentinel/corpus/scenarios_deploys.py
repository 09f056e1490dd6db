"""Deploys from git: a commit, then the restart that runs it, and the service that cannot start (or runs
and does nothing) from then on. The commit is made before the service was last seen healthy, as a real
deploy's is: the old process keeps running until the restart."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import SERVICES, Plan, Run, Scenario

DAY = 86400.0
Edit = tuple[str, str, str]  # (file in the work tree, text to replace, its replacement)


def install_bot(run: Run) -> None:
    """The bot's code as a git work tree with some history, all of it older than the change window."""
    shutil.copytree(SERVICES / "deploy_bot", run.app, dirs_exist_ok=True)
    run.install()
    (run.app / ".gitignore").write_text("__pycache__/\n")
    now = time.time()
    run.git("init", "-q", "-b", "main")
    run.git("add", "-A")
    run.git("commit", "-q", "-m", "bot: first version", at=now - 9 * DAY)
    edit(run, [("bot/exchange.py", "        out = {}\n", "        out: dict[str, tuple[float, float]] = {}\n")])
    run.git("commit", "-q", "-am", "exchange: annotate the quotes dict", at=now - 5 * 3600)


def edit(run: Run, edits: list[Edit]) -> None:
    for name, old, new in edits:
        path = run.app / name
        text = path.read_text()
        assert old in text, f"{name} has no {old!r}"
        path.write_text(text.replace(old, new, 1))


def deploy(run: Run, edits: list[Edit], subject: str) -> Callable[[], None]:
    """The deploy: commit the change, then restart the service (its shell loop starts the new code)."""

    def act() -> None:
        edit(run, edits)
        run.git("add", "-A")
        run.git("commit", "-q", "-m", subject)
        run.mark_failing()
        run.stop_service_process()

    return act


def bot_plan(
    run: Run,
    monitor_check: dict[str, object],
    trigger: Callable[[], None],
    *,
    fails_at_start: bool = True,
    **params: object,
) -> Plan:
    """The bot under its shell loop; ``fails_at_start``: the new code cannot start, so the diagnosis waits
    until the loop has tried it twice."""
    loop_log = run.log("bot.log")
    return Plan(
        service="run_bot.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="bot",
            noise=("deprecation", "zero_stats", "retry_ok"),
            status_file=str(run.out / "status.json"),
            **params,
        ),
        monitor=blocks.monitor(monitor_check, logs=[loop_log], process=run.pattern("run_bot.py"), work_tree=run.app),
        output=loop_log,
        loop_message="[supervisor] bot exited with status $?, restarting in 0.2 s",
        steady_restarts=2 if fails_at_start else 0,
        env={"EXCHANGE_API_KEY": "k-51f0c2d9e8"},
        trigger=trigger,
    )


def import_error(run: Run) -> Plan:
    install_bot(run)
    change = deploy(
        run,
        [("bot/main.py", "from bot.exchange import ExchangeClient", "from bot.exchange_clients import ExchangeClient")],
        "move the exchange client into bot.exchange_clients",
    )
    return bot_plan(run, blocks.artifacts(run.out, "trade-*.json"), change)


def syntax_error(run: Run) -> Plan:
    install_bot(run)
    port = run.free_port()
    change = deploy(
        run,
        [
            (
                "bot/signals.py",
                "        if edge > MIN_EDGE_BPS:",
                "        if edge > MIN_EDGE_BPS and market not in SKIP",
            ),
            ("bot/signals.py", "MIN_EDGE_BPS = 5\n", 'MIN_EDGE_BPS = 5\nSKIP = {"ARB-PERP"}\n'),
        ],
        "signals: skip markets we do not trade",
    )
    return bot_plan(run, blocks.http(f"http://127.0.0.1:{port}/health"), change, health_port=port)


def missing_setting(run: Run) -> Plan:
    install_bot(run)
    change = deploy(
        run,
        [
            (
                "bot/settings.py",
                '    exchange_api_key: str = Field(validation_alias="EXCHANGE_API_KEY")\n',
                '    exchange_api_key: str = Field(validation_alias="EXCHANGE_API_KEY")\n'
                '    exchange_api_secret: str = Field(validation_alias="EXCHANGE_API_SECRET")\n',
            )
        ],
        "settings: sign requests with the API secret",
    )
    return bot_plan(run, blocks.fresh_file(run.out / "status.json"), change)


def missing_env_var(run: Run) -> Plan:
    install_bot(run)
    port = run.free_port()
    change = deploy(
        run,
        [
            ("bot/exchange.py", "import random\n", "import os\nimport random\n"),
            (
                "bot/exchange.py",
                "        self.markets = markets\n",
                '        self.markets = markets\n        self.ws_url = os.environ["EXCHANGE_WS_URL"]\n',
            ),
        ],
        "exchange: stream quotes over the websocket",
    )
    return bot_plan(run, blocks.port_open(port), change, health_port=port)


def threshold_raised(run: Run) -> Plan:
    install_bot(run)
    change = deploy(
        run,
        [("bot/signals.py", "MIN_EDGE_BPS = 5\n", "MIN_EDGE_BPS = 500\n")],
        "signals: raise the minimum edge to 500 bps",
    )
    return bot_plan(run, blocks.artifacts(run.out, "trade-*.json"), change, fails_at_start=False)


SCENARIOS = [
    Scenario(
        "import-error-after-deploy",
        "import_or_config_error",
        "No module named 'bot.exchange_clients'",
        import_error,
        "The deploy imports a module that was never added; ModuleNotFoundError at every restart of the loop.",
        requires=("git",),
    ),
    Scenario(
        "syntax-error-after-deploy",
        "import_or_config_error",
        "signals.py",
        syntax_error,
        "The deploy leaves a colon out of signals.py; SyntaxError at every restart, and /health is refused.",
        requires=("git",),
    ),
    Scenario(
        "missing-setting-after-deploy",
        "import_or_config_error",
        "validation error for Settings",
        missing_setting,
        "The deploy requires EXCHANGE_API_SECRET, which the environment lacks: pydantic's ValidationError.",
        requires=("git",),
    ),
    Scenario(
        "missing-env-var-after-deploy",
        "import_or_config_error",
        "KeyError: 'EXCHANGE_WS_URL'",
        missing_env_var,
        "The deploy reads os.environ['EXCHANGE_WS_URL'], never set: KeyError at start; the port stays closed.",
        requires=("git",),
    ),
    Scenario(
        "threshold-raised-by-deploy",
        "recent_change",
        "minimum edge to 500 bps",
        threshold_raised,
        "The deploy raises the minimum edge a hundredfold: the bot runs, logs routine scans, trades nothing.",
        requires=("git",),
    ),
]
