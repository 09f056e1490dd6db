"""Stand-in for py-amqp: a connection whose frames are lines read from a real TCP socket."""

from amqp.connection import Connection

__all__ = ["Connection"]
