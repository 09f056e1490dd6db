"""An S3 client over http.client: PutObject, with the standard retry mode's attempts and jittered backoff."""

from __future__ import annotations

import http.client
import random
import re
import time
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

# What the standard mode retries: throttling codes and transient HTTP statuses.
_RETRYABLE_CODES = {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "InternalError"}
_RETRYABLE_STATUS = {500, 502, 503, 504}


class S3:
    def __init__(self, endpoint_url: str, region_name: str = "us-east-1", config: Config | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.config = config or Config()
        parts = urlsplit(endpoint_url)
        self._host, self._port = parts.hostname or "localhost", parts.port or 80

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:
        return self._make_api_call("PutObject", "PUT", f"/{Bucket}/{Key}", Body)

    def _make_api_call(self, operation: str, method: str, path: str, body: bytes) -> dict[str, Any]:
        max_attempts = int(self.config.retries.get("max_attempts", 3))
        attempt = 0
        while True:
            attempt += 1
            status, payload = self._send(method, path, body)
            if status < 300:
                return {"ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": attempt - 1}}
            code = _tag(payload, "Code") or str(status)
            retryable = code in _RETRYABLE_CODES or status in _RETRYABLE_STATUS
            if not retryable or attempt >= max_attempts:
                response = {
                    "Error": {
                        "Code": code,
                        "Message": _tag(payload, "Message") or http.client.responses.get(status, ""),
                    },
                    "ResponseMetadata": {
                        "HTTPStatusCode": status,
                        "RetryAttempts": attempt - 1,
                        "MaxAttemptsReached": retryable,
                    },
                }
                raise ClientError(response, operation)
            time.sleep(random.uniform(0, min(0.2, 0.05 * 2**attempt)))

    def _send(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self.config.read_timeout)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/octet-stream"})
            answer = connection.getresponse()
            return answer.status, answer.read().decode(errors="replace")
        except ConnectionRefusedError:
            raise EndpointConnectionError(endpoint_url=f"{self.endpoint_url}{path}") from None
        finally:
            connection.close()


def _tag(xml: str, name: str) -> str | None:
    match = re.search(rf"<{name}>(.*?)</{name}>", xml, re.S)
    return match[1] if match else None
