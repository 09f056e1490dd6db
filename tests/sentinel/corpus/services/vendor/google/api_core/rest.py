"""One REST call, as the generated clients' transports make it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from google.api_core import exceptions


def call(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        payload = json.loads(error.read() or b"{}")
        raise exceptions.from_http_response(method, url, error.code, payload) from None
