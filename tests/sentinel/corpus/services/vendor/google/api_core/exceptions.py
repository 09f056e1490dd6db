"""google-api-core's exceptions, created from an HTTP response as ``from_http_response`` creates them."""

from __future__ import annotations

from typing import Any


class GoogleAPIError(Exception):
    pass


class GoogleAPICallError(GoogleAPIError):
    code: int | None = None

    def __init__(self, message: str, errors: tuple[Any, ...] = (), response: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self._errors = errors
        self._response = response

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class ClientError(GoogleAPICallError):
    pass


class Unauthorized(ClientError):
    code = 401


class Forbidden(ClientError):
    code = 403


class TooManyRequests(ClientError):
    code = 429


class ServerError(GoogleAPICallError):
    code = 500


class ServiceUnavailable(ServerError):
    code = 503


_BY_CODE: dict[int, type[GoogleAPICallError]] = {
    401: Unauthorized,
    403: Forbidden,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def from_http_status(status_code: int, message: str, **kwargs: Any) -> GoogleAPICallError:
    error_class = _BY_CODE.get(status_code, ServerError if status_code >= 500 else ClientError)
    error = error_class(message, **kwargs)
    if error.code is None:
        error.code = status_code
    return error


def from_http_response(method: str, url: str, status: int, payload: dict[str, Any]) -> GoogleAPICallError:
    error_message = payload.get("error", {}).get("message", "unknown error")
    message = f"{method} {url}: {error_message}"
    return from_http_status(status, message, errors=(payload.get("error", {}),))
