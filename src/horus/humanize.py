"""Numbers written for people reading a log line or a table at 3 am."""

from __future__ import annotations

__all__ = ["duration", "seconds", "size"]


def seconds(value: float) -> str:
    """``312 s``, ``2.5 s``, ``45 ms``: precise where precision matters, short where it does not."""
    if value < 0:
        return "-" + seconds(-value)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10 and value != int(value):
        return f"{value:.1f} s"
    return f"{value:.0f} s"


def duration(value: float) -> str:
    """``45 s``, ``10 min``, ``3 h 5 min``, ``2 d 3 h``, ``56 years``: how long something lasted, to the unit
    that matters."""
    if value < 120:
        return seconds(value)
    minutes = int(value // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    if days >= 730:
        return f"{days / 365.25:.0f} years"
    return f"{days} d {hours} h" if hours else f"{days} d"


def size(value: float) -> str:
    """``512 B``, ``64 KB``, ``3.2 MB``, ``1.5 GB``: a size in bytes, in the unit a person reads."""
    for unit in ("B", "KB", "MB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
