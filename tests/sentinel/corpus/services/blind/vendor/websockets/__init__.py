"""Stand-in for the websockets library (11.x legacy client): a real RFC 6455 client over asyncio streams."""

from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from websockets.legacy.client import connect

__all__ = ["ConnectionClosed", "ConnectionClosedError", "ConnectionClosedOK", "InvalidHandshake", "connect"]
