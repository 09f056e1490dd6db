"""Horus: a self-healing watchdog that makes "alive" mean "working"."""

__version__ = "0.1.0"

__all__ = ["__version__"]
