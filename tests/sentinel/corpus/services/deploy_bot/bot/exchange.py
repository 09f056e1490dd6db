"""The exchange client: quotes for the markets the bot watches."""

from __future__ import annotations

import random


class ExchangeClient:
    def __init__(self, markets: list[str]) -> None:
        self.markets = markets
        self._random = random.Random(7)

    def quotes(self) -> dict[str, tuple[float, float]]:
        out = {}
        for market in self.markets:
            mid = 100 + self._random.random()
            spread = mid * self._random.uniform(0.0004, 0.0030)
            out[market] = (mid - spread / 2, mid + spread / 2)
        return out
