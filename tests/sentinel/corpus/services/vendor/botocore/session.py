"""Sessions create clients."""

from __future__ import annotations

from botocore.client import BaseClient


class Session:
    def create_client(self, service_name: str, *, endpoint_url: str, region_name: str = "us-east-1") -> BaseClient:
        return BaseClient(service_name, endpoint_url, region_name)


def get_session() -> Session:
    return Session()
