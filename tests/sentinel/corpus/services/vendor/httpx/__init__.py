"""Stand-in for httpx: ``Client.get`` and ``Response.raise_for_status``, with httpx's own messages."""

from __future__ import annotations

import http.client
import urllib.parse
from typing import Any

__all__ = ["Client", "ConnectError", "HTTPStatusError", "ReadTimeout", "Response"]

_REASONS = {code: phrase for code, phrase in ((s.value, s.phrase) for s in __import__("http").HTTPStatus)}


class HTTPError(Exception):
    pass


class RequestError(HTTPError):
    pass


class ConnectError(RequestError):
    pass


class ReadTimeout(RequestError):
    pass


class HTTPStatusError(HTTPError):
    def __init__(self, message: str, *, request: Any, response: Response) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


class Response:
    def __init__(self, status_code: int, url: str, content: bytes) -> None:
        self.status_code = status_code
        self.url = url
        self.content = content
        self.reason_phrase = _REASONS.get(status_code, "")

    def raise_for_status(self) -> Response:
        if self.status_code < 400:
            return self
        kind = "Client error" if self.status_code < 500 else "Server error"
        message = (
            f"{kind} '{self.status_code} {self.reason_phrase}' for url '{self.url}'\n"
            f"For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/{self.status_code}"
        )
        raise HTTPStatusError(message, request=None, response=self)


class Client:
    def __init__(self, base_url: str = "", timeout: float = 5.0) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def get(self, url: str) -> Response:
        return self.request("GET", url)

    def request(self, method: str, url: str) -> Response:
        full = urllib.parse.urljoin(self.base_url, url)
        parts = urllib.parse.urlsplit(full)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        try:
            conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""))
            answer = conn.getresponse()
            return Response(answer.status, full, answer.read())
        except ConnectionRefusedError as exc:
            raise ConnectError(str(exc)) from None
        except TimeoutError:
            raise ReadTimeout("timed out") from None
        finally:
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
