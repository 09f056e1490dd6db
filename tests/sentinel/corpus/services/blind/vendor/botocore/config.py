from __future__ import annotations

from typing import Any


class Config:
    def __init__(self, retries: dict[str, Any] | None = None, connect_timeout: float = 60, read_timeout: float = 60):
        self.retries = retries or {"mode": "legacy", "max_attempts": 5}
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
