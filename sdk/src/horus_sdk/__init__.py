"""horus-sdk: make a long-running asyncio service say whether it is *working*, not just alive.

Standard library only. Nothing starts until you ask: no thread, no signal handler, no patching.
"""

from horus_sdk.formats import crash_summary

__version__ = "0.1.0"

__all__ = ["__version__", "crash_summary"]
