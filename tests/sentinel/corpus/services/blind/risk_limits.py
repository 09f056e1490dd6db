"""A risk-limit service that reads its settings from an env file with pydantic, then beats horus-sdk's
heartbeat while it evaluates limits. Started by a shell loop; a setting it cannot parse stops it at start,
with pydantic's ValidationError, at every restart. The standard logging module (its traceback on stderr too,
as Python prints one). Parameters: ``env_file``, ``heartbeat``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from holdout_kit import Service
from pydantic import BaseModel

from horus_sdk import Heartbeat

svc = Service()
log = svc.logger("risk.limits")


class Settings(BaseModel):
    venue: str
    max_position_usd: int
    max_order_usd: int
    kill_switch_drawdown_pct: float


def routine(tick: int) -> None:
    if tick == 0:
        log.info("settings loaded from %s: venue=deribit max_position_usd=250000 max_order_usd=25000", svc["env_file"])
    log.info("limits evaluated for %d accounts, 0 breaches", 31)
    if tick % 8 == 5:
        log.warning("acct-%d at 87%% of its position limit", tick % 31)
    if tick % 17 == 9:
        log.error("price for SOL-PERP missing; limit check used the last mark (41 s old)")


def load_settings(path: Path) -> Settings:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip().lower()] = value.strip()
    return Settings(**values)


async def main(settings: Settings) -> None:
    async with Heartbeat(svc["heartbeat"], interval=0.1) as hb:
        evaluations = 0
        while True:
            evaluations += 1
            hb.progress("limits")
            if evaluations % 10 == 0:
                log.info("limits evaluated for %d accounts, 0 breaches", 31)
            await asyncio.sleep(svc.tick_seconds)


svc.history(routine)
try:
    settings = load_settings(Path(svc["env_file"]))
except Exception:
    log.critical("cannot start: invalid settings in %s", svc["env_file"], exc_info=True)
    raise
log.info(
    "settings loaded from %s: venue=%s max_position_usd=%d", svc["env_file"], settings.venue, settings.max_position_usd
)
asyncio.run(main(settings))
