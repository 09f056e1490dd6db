"""Stand-in for boto3: ``boto3.client(...)`` is botocore's client."""

from __future__ import annotations

from typing import Any

from botocore.session import get_session


def client(service_name: str, **kwargs: Any) -> Any:
    return get_session().create_client(service_name, **kwargs)


__all__ = ["client"]
