"""Stand-in for redis-py: ``Redis(...).ping/set/incr``, with redis-py's ConnectionError messages."""

from redis.client import Redis

__all__ = ["Redis"]
