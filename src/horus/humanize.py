"""Numbers written for people reading a log line or a table at 3 am."""

from __future__ import annotations

__all__ = ["seconds"]


def seconds(value: float) -> str:
    """``312 s``, ``2.5 s``, ``45 ms``: precise where precision matters, short where it does not."""
    if value < 0:
        return "-" + seconds(-value)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10 and value != int(value):
        return f"{value:.1f} s"
    return f"{value:.0f} s"
