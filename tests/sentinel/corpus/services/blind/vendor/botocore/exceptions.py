"""botocore's exceptions, worded as botocore words them."""

from __future__ import annotations

from typing import Any


class BotoCoreError(Exception):
    fmt = "An unspecified error occurred"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.fmt.format(**kwargs))
        self.kwargs = kwargs


class EndpointConnectionError(BotoCoreError):
    fmt = 'Could not connect to the endpoint URL: "{endpoint_url}"'


class ClientError(Exception):
    MSG_TEMPLATE = (
        "An error occurred ({error_code}) when calling the {operation_name} operation{retry_info}: {error_message}"
    )

    def __init__(self, error_response: dict[str, Any], operation_name: str) -> None:
        retry_info = self._get_retry_info(error_response)
        error = error_response.get("Error", {})
        msg = self.MSG_TEMPLATE.format(
            error_code=error.get("Code", "Unknown"),
            error_message=error.get("Message", "Unknown"),
            operation_name=operation_name,
            retry_info=retry_info,
        )
        super().__init__(msg)
        self.response = error_response
        self.operation_name = operation_name

    def _get_retry_info(self, response: dict[str, Any]) -> str:
        metadata = response.get("ResponseMetadata", {})
        if metadata.get("MaxAttemptsReached", False) and "RetryAttempts" in metadata:
            return f" (reached max retries: {metadata['RetryAttempts']})"
        return ""
