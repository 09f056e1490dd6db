"""The one place Horus touches Apprise, so its import cost and its logging stay contained.

Apprise logs through the standard ``logging`` module, and some of its messages quote the URL it was
given, whose path or query is usually a token. Its logger is kept quiet (CRITICAL only) here; failures
reach Horus as return values, and Horus words them without the URL. So is urllib3's, which Apprise's
HTTP plugins use through requests: its debug lines quote each request's path (``POST /hook/<token>``).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["apprise_accepts", "load_apprise"]


def load_apprise() -> Any:
    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3").setLevel(logging.CRITICAL)
    return apprise


def apprise_accepts(url: str) -> bool:
    """Whether Apprise has a plugin for ``url`` and can parse it."""
    apprise = load_apprise()
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None
    except Exception:
        return False
