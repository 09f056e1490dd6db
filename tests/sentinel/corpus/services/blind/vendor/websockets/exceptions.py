"""websockets' exceptions, with the library's own messages."""

from __future__ import annotations


class WebSocketException(Exception):
    pass


class InvalidHandshake(WebSocketException):
    pass


class Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code} ({'OK' if self.code == 1000 else 'error'}){' ' + self.reason if self.reason else ''}"


class ConnectionClosed(WebSocketException):
    """Raised when trying to interact with a closed connection."""

    def __init__(self, rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None = None) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        return f"received {self.rcvd}; then sent {self.sent}"

    @property
    def code(self) -> int:
        # 1006: the connection was closed abnormally, without a close frame.
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedError(ConnectionClosed):
    pass


class ConnectionClosedOK(ConnectionClosed):
    pass
