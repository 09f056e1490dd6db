"""A client whose operations are POSTs of JSON (``X-Amz-Target``), retried as botocore's legacy mode retries."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from botocore.exceptions import ClientError

# Legacy retry mode: four retries of throttling errors, with a short backoff here.
MAX_RETRIES = 4
RETRYABLE = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}
PREFIXES = {"kinesis": "Kinesis_20131202", "sqs": "AmazonSQS", "dynamodb": "DynamoDB_20120810"}


class BaseClient:
    def __init__(self, service_name: str, endpoint_url: str, region_name: str) -> None:
        self._service = service_name
        self._endpoint = endpoint_url
        self._region = region_name

    def __getattr__(self, name: str) -> Any:
        operation = "".join(part.title() for part in name.split("_"))

        def _api_call(**kwargs: Any) -> dict[str, Any]:
            return self._make_api_call(operation, kwargs)

        return _api_call

    def _make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> dict[str, Any]:
        attempts = 0
        while True:
            status, parsed = self._make_request(operation_name, api_params)
            if status < 300:
                return parsed
            code = parsed.get("__type", "Unknown").split("#")[-1]
            if code in RETRYABLE and attempts < MAX_RETRIES:
                attempts += 1
                time.sleep(0.02 * attempts)
                continue
            error_response = {
                "Error": {"Code": code, "Message": parsed.get("message", "")},
                "ResponseMetadata": {
                    "HTTPStatusCode": status,
                    "RetryAttempts": attempts,
                    "MaxAttemptsReached": attempts >= MAX_RETRIES,
                },
            }
            raise ClientError(error_response, operation_name)

    def _make_request(self, operation_name: str, api_params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self._endpoint,
            data=json.dumps(api_params, default=str).encode(),
            headers={
                "X-Amz-Target": f"{PREFIXES.get(self._service, self._service)}.{operation_name}",
                "Content-Type": "application/x-amz-json-1.1",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
