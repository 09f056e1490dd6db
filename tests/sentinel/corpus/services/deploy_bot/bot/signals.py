"""Which quotes are worth trading."""

from __future__ import annotations

MIN_EDGE_BPS = 5


def opportunities(quotes: dict[str, tuple[float, float]]) -> list[tuple[str, float]]:
    found = []
    for market, (bid, ask) in quotes.items():
        edge = (ask - bid) / ((ask + bid) / 2) * 10_000
        if edge > MIN_EDGE_BPS:
            found.append((market, round(edge, 1)))
    return found
