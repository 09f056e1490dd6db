"""Stand-in for kombu: a broker URL, a connection, and its retrying connect."""

from kombu.connection import Connection

__all__ = ["Connection"]
